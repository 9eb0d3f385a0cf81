"""Every published occlusion/pose list (byte-exact copies in tests/fixtures) parses with the published counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from examples.common.subsets import parse_subset_list

LISTS = Path(__file__).resolve().parents[1] / "fixtures" / "subset_lists"

# (file, dataset, label file, format, unique images, duplicate lines); counts from the lists' README
PUBLISHED = [
    ("FERplus_dir/jianfei_occlusion_list.txt", "ferplus", None, "ferplus_occlusion", 605, 0),
    ("FERplus_dir/pose_30_ferplus_list.txt", "ferplus", None, "ferplus_pose", 1170, 0),
    ("FERplus_dir/pose_45_ferplus_list.txt", "ferplus", None, "ferplus_pose", 633, 0),
    ("val_ferplus_mn.txt", "ferplus", None, "ferplus_mn", 1170, 1),
    ("AffectNet_dir/occlusion_affectnet_list.txt", "affectnet", None, "affectnet_occlusion", 683, 0),
    ("AffectNet_dir/pose_30_affectnet_list.txt", "affectnet", None, "affectnet_pose", 1944, 5),
    ("AffectNet_dir/pose_45_affectnet_list.txt", "affectnet", None, "affectnet_region", 983, 2),
    ("RAF_DB_dir/rafdb_occlusion_list.txt", "rafdb", None, "rafdb_occlusion", 734, 1),
    ("RAF_DB_dir/val_raf_db_list.txt", "rafdb", "RAF_DB_dir/val_raf_db_label.txt", "rafdb_pose", 1247, 0),
    ("RAF_DB_dir/val_raf_db_list_45.txt", "rafdb", "RAF_DB_dir/val_raf_db_label_45.txt", "rafdb_pose", 558, 0),
]


@pytest.mark.parametrize(
    ("name", "dataset", "labels", "fmt", "unique", "duplicates"), PUBLISHED, ids=[p[0] for p in PUBLISHED]
)
def test_published_list(name, dataset, labels, fmt, unique, duplicates):
    subset = parse_subset_list(LISTS / name, dataset=dataset, label_path=None if labels is None else LISTS / labels)
    assert subset.format == fmt
    assert len(subset) == unique
    assert subset.duplicates == duplicates
    assert len({e.key for e in subset.entries}) == unique


def test_pose45_is_a_subset_of_pose30():
    p30 = set(parse_subset_list(LISTS / "FERplus_dir/pose_30_ferplus_list.txt").keys)
    p45 = set(parse_subset_list(LISTS / "FERplus_dir/pose_45_ferplus_list.txt").keys)
    assert p45 <= p30


def test_occlusion_types_are_recorded():
    occ = parse_subset_list(LISTS / "RAF_DB_dir/rafdb_occlusion_list.txt", dataset="rafdb")
    assert {e.kind for e in occ.entries} == {1, 2, 3, 4}
    assert occ.duplicate_keys == ["test_2464"]
