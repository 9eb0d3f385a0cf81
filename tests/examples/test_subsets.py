"""Parsers of the published RAN occlusion/pose lists, on excerpts copied byte for byte from the real files
(kaiwang960112/Challenge-condition-FER-dataset), including their CRLF endings, missing final newlines and
duplicate lines."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from examples.common.subsets import (
    SubsetList,
    add_subset_argument,
    image_key,
    match_subset,
    match_subset_with_labels,
    parse_subset_arg,
    parse_subset_list,
    read_label_file,
)

# FERplus_dir/jianfei_occlusion_list.txt: lines 1-3 and 26 (CRLF)
FERPLUS_OCCLUSION = b"1_fer0034656.png 8 0\r\n1_fer0033878.png 8 0\r\n2_fer0033359.png 8 2\r\n7_fer0032220.png 8 3\r\n"
# FERplus_dir/pose_30_ferplus_list.txt: lines 1-3
FERPLUS_POSE = b"0/fer0032226.jpg\n1/fer0032227.jpg\n4/fer0032228.jpg\n"
# val_ferplus_mn.txt: lines 406-410 (the file's one duplicate)
FERPLUS_MN = (
    b"1_fer0033392.txt 1_fer0033392_label.txt 4\n"
    b"6_fer0033394.txt 6_fer0033394_label.txt 4\n"
    b"0_fer0033395.txt 0_fer0033395_label.txt 4\n"
    b"0_fer0033395.txt 0_fer0033395_label.txt 4\n"
    b"1_fer0033396.txt 1_fer0033396_label.txt 4\n"
)
# AffectNet_dir/occlusion_affectnet_list.txt: lines 1-3
AFFECTNET_OCCLUSION = (
    b"val/0/bc9ad400db82eca1882b11c9603348fb3e92f5b0d67391ac22a1bc79/\n"
    b"val/0/a0d5a9a7e4ae3551ee469d70a10bf34fb97fd05408be7d7ae4e9b82d/\n"
    b"val/0/d3dfb1911aceff755734ebbd0f5dc4b531560a310f73470d5b4d0378/\n"
)
# AffectNet_dir/pose_30_affectnet_list.txt: lines 1527-1531 (a duplicate)
AFFECTNET_POSE30 = (
    b"2/a9cf99a48de8d4a8765046c1537b1fd398626130152ed66aafd09067.jpg\n"
    b"5/62801fd29f5627c592f7a81f7d431af9c50fa407af16beddb419f5a1.jpg\n"
    b"0/a88aaefca4c59767ff0fc39bff691b4865efd91fb133c99c15289f41.jpg\n"
    b"0/a88aaefca4c59767ff0fc39bff691b4865efd91fb133c99c15289f41.jpg\n"
    b"4/7f5b1479f210d4e122a4bb7f8c9c34c20d60f85331f623b0e9a9e3a4.jpg\n"
)
# AffectNet_dir/pose_45_affectnet_list.txt: lines 782-785 (a duplicate)
AFFECTNET_POSE45 = (
    b"3/a32fa58a68088181dbdf8bf9df72ddd5bb7d915edce3c73cf645d684/8.jpg\n"
    b"0/a88aaefca4c59767ff0fc39bff691b4865efd91fb133c99c15289f41/8.jpg\n"
    b"0/a88aaefca4c59767ff0fc39bff691b4865efd91fb133c99c15289f41/8.jpg\n"
    b"4/7f5b1479f210d4e122a4bb7f8c9c34c20d60f85331f623b0e9a9e3a4/8.jpg\n"
)
# RAF_DB_dir/rafdb_occlusion_list.txt: lines 314-318 and the last two (CRLF, no final newline)
RAFDB_OCCLUSION = (
    b"test_2457_aligned 6 3\r\n"
    b"test_2462_aligned 6 4\r\n"
    b"test_2464_aligned 6 2\r\n"
    b"test_2464_aligned 6 2\r\n"
    b"test_2469_aligned 6 1\r\n"
    b"test_1995_aligned 3 3\r\n"
    b"test_2001_aligned 3 3"
)
# RAF_DB_dir/val_raf_db_list_45.txt lines 1-3 and val_raf_db_label_45.txt (header count adapted, no final newline)
RAFDB_POSE = b"0/test_0004_aligned.jpg\n4/test_0006_aligned.jpg\n2/test_0011_aligned.jpg\n"
RAFDB_POSE_LABELS = b"3 7\n0\n4\n2"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def triples(subset: SubsetList) -> list[tuple[str, int | None, int | None]]:
    return [(e.key, e.label, e.kind) for e in subset.entries]


def test_ferplus_occlusion_crlf(tmp_path: Path) -> None:
    subset = parse_subset_list(write(tmp_path, "occ.txt", FERPLUS_OCCLUSION), "ferplus")
    assert subset.format == "ferplus_occlusion"
    assert triples(subset) == [
        ("fer0034656", 1, 0),
        ("fer0033878", 1, 0),
        ("fer0033359", 2, 2),
        ("fer0032220", 7, 3),
    ]
    assert subset.duplicates == 0 and subset.lines == 4
    assert subset.name == "occ"


def test_ferplus_pose(tmp_path: Path) -> None:
    subset = parse_subset_list(write(tmp_path, "pose.txt", FERPLUS_POSE), "ferplus")
    assert subset.format == "ferplus_pose"
    assert triples(subset) == [("fer0032226", 0, None), ("fer0032227", 1, None), ("fer0032228", 4, None)]


def test_ferplus_mn_duplicate_counted_once(tmp_path: Path) -> None:
    subset = parse_subset_list(write(tmp_path, "val_ferplus_mn.txt", FERPLUS_MN), "ferplus")
    assert subset.format == "ferplus_mn"
    assert subset.keys == ["fer0033392", "fer0033394", "fer0033395", "fer0033396"]
    assert [e.label for e in subset.entries] == [1, 6, 0, 1]
    assert subset.duplicates == 1 and subset.duplicate_keys == ["fer0033395"]
    assert subset.lines == 5
    assert [e.line for e in subset.entries] == [1, 2, 3, 5]


def test_ferplus_mn_inconsistent_line(tmp_path: Path) -> None:
    path = write(tmp_path, "mn.txt", b"0_fer0033395.txt 1_fer0033395_label.txt 4\n")
    with pytest.raises(ValueError, match=r"line 1.*disagree"):
        parse_subset_list(path, "ferplus")


def test_affectnet_formats(tmp_path: Path) -> None:
    occ = parse_subset_list(write(tmp_path, "occ.txt", AFFECTNET_OCCLUSION), "affectnet")
    assert occ.format == "affectnet_occlusion"
    assert triples(occ) == [
        ("bc9ad400db82eca1882b11c9603348fb3e92f5b0d67391ac22a1bc79", 0, None),
        ("a0d5a9a7e4ae3551ee469d70a10bf34fb97fd05408be7d7ae4e9b82d", 0, None),
        ("d3dfb1911aceff755734ebbd0f5dc4b531560a310f73470d5b4d0378", 0, None),
    ]
    pose30 = parse_subset_list(write(tmp_path, "p30.txt", AFFECTNET_POSE30), "affectnet")
    assert pose30.format == "affectnet_pose"
    assert [e.label for e in pose30.entries] == [2, 5, 0, 4]
    assert pose30.keys[2] == "a88aaefca4c59767ff0fc39bff691b4865efd91fb133c99c15289f41"
    assert pose30.duplicates == 1
    pose45 = parse_subset_list(write(tmp_path, "p45.txt", AFFECTNET_POSE45), "affectnet")
    assert pose45.format == "affectnet_region"
    assert pose45.keys == [
        "a32fa58a68088181dbdf8bf9df72ddd5bb7d915edce3c73cf645d684",
        "a88aaefca4c59767ff0fc39bff691b4865efd91fb133c99c15289f41",
        "7f5b1479f210d4e122a4bb7f8c9c34c20d60f85331f623b0e9a9e3a4",
    ]
    assert [e.label for e in pose45.entries] == [3, 0, 4]
    assert pose45.duplicates == 1


def test_rafdb_occlusion_crlf_no_final_newline_duplicate(tmp_path: Path) -> None:
    subset = parse_subset_list(write(tmp_path, "rafdb_occlusion_list.txt", RAFDB_OCCLUSION), "rafdb")
    assert subset.format == "rafdb_occlusion"
    assert triples(subset) == [
        ("test_2457", 6, 3),
        ("test_2462", 6, 4),
        ("test_2464", 6, 2),
        ("test_2469", 6, 1),
        ("test_1995", 3, 3),
        ("test_2001", 3, 3),
    ]
    assert subset.duplicates == 1 and subset.lines == 7


def test_rafdb_pose_with_label_file(tmp_path: Path) -> None:
    labels = write(tmp_path, "val_raf_db_label_45.txt", RAFDB_POSE_LABELS)
    subset = parse_subset_list(write(tmp_path, "val_raf_db_list_45.txt", RAFDB_POSE), "rafdb", label_path=labels)
    assert subset.format == "rafdb_pose"
    assert triples(subset) == [("test_0004", 0, None), ("test_0006", 4, None), ("test_0011", 2, None)]
    assert subset.label_path == labels
    assert read_label_file(labels) == [0, 4, 2]


def test_rafdb_label_file_count_mismatch(tmp_path: Path) -> None:
    labels = write(tmp_path, "labels.txt", b"2 7\n0\n4")
    listing = write(tmp_path, "list.txt", RAFDB_POSE)
    with pytest.raises(ValueError, match=r"has 2 labels but .*list\.txt has 3"):
        parse_subset_list(listing, "rafdb", label_path=labels)


def test_rafdb_label_file_header_disagrees_with_body(tmp_path: Path) -> None:
    labels = write(tmp_path, "labels.txt", b"4 7\n0\n4\n2")
    with pytest.raises(ValueError, match=r"header says 4 labels, file has 3"):
        read_label_file(labels)


def test_rafdb_label_file_label_disagreement(tmp_path: Path) -> None:
    labels = write(tmp_path, "labels.txt", b"3 7\n0\n5\n2\n")
    listing = write(tmp_path, "list.txt", RAFDB_POSE)
    with pytest.raises(ValueError, match=r"1 label\(s\): line 2: list 4 vs label file 5"):
        parse_subset_list(listing, "rafdb", label_path=labels)


def test_rafdb_label_out_of_range(tmp_path: Path) -> None:
    labels = write(tmp_path, "labels.txt", b"1 7\n7\n")
    with pytest.raises(ValueError, match=r"labels\.txt, line 2: .*0\.\.6"):
        read_label_file(labels)


def test_blank_lines_and_whitespace_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "pose.txt", b"\n0/fer0032226.jpg  \r\n\r\n\n1/fer0032227.jpg\n\n")
    subset = parse_subset_list(path, "ferplus")
    assert subset.keys == ["fer0032226", "fer0032227"]
    assert [e.line for e in subset.entries] == [2, 5]


def test_unknown_format_names_file_line_and_formats(tmp_path: Path) -> None:
    path = write(tmp_path, "weird.txt", b"fer0032226 happy\n")
    with pytest.raises(ValueError) as info:
        parse_subset_list(path, "ferplus")
    message = str(info.value)
    assert str(path) in message and "line 1" in message and "'fer0032226 happy'" in message
    assert "ferplus_occlusion" in message and "ferplus_pose" in message and "ferplus_mn" in message


def test_format_change_mid_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "mixed.txt", b"0/fer0032226.jpg\n1_fer0034656.png 8 0\r\n")
    with pytest.raises(ValueError, match=r"mixed\.txt, line 2: line '1_fer0034656\.png 8 0'.*ferplus_pose"):
        parse_subset_list(path, "ferplus")


def test_list_of_another_dataset_is_rejected_with_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "raf.txt", RAFDB_OCCLUSION)
    with pytest.raises(ValueError, match=r"looks like a rafdb list"):
        parse_subset_list(path, "ferplus")


def test_conflicting_duplicate_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "occ.txt", b"test_2464_aligned 6 2\r\ntest_2464_aligned 5 2\r\n")
    with pytest.raises(ValueError, match=r"line 2: test_2464 is listed again with label 5"):
        parse_subset_list(path, "rafdb")


def test_empty_and_missing_lists(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        parse_subset_list(write(tmp_path, "empty.txt", b"\r\n\n"), "ferplus")
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        parse_subset_list(tmp_path / "nope.txt", "ferplus")
    with pytest.raises(ValueError, match="unknown dataset"):
        parse_subset_list(write(tmp_path, "p.txt", FERPLUS_POSE), "sfew")


def test_match_subset_reports_unmatched(tmp_path: Path) -> None:
    subset = parse_subset_list(write(tmp_path, "occ.txt", FERPLUS_OCCLUSION), "ferplus")
    keys_to_index = {"fer0033878": 5, "fer0032220": 0, "fer0099999": 1}
    indices, unmatched = match_subset(subset, keys_to_index)
    assert indices == [5, 0]
    assert unmatched == ["fer0034656", "fer0033359"]


def test_match_subset_with_labels_counts_disagreements(tmp_path: Path) -> None:
    subset = parse_subset_list(write(tmp_path, "occ.txt", FERPLUS_OCCLUSION), "ferplus")
    # list labels: fer0034656 1, fer0033878 1, fer0033359 2, fer0032220 7
    keys_to_index = {"fer0034656": 0, "fer0033878": 1, "fer0033359": 2}
    labels = [1, 3, -1]  # agree, disagree, undefined (not compared)
    result = match_subset_with_labels(subset, keys_to_index, labels)
    assert result.indices == [0, 1, 2]
    assert result.unmatched == ["fer0032220"]
    assert result.disagreements == [("fer0033878", 1, 3)]
    assert result.label_disagreements == 1
    assert "3 matched, 1 unmatched (fer0032220), 1 label disagreement" in result.summary("occlusion")


def test_image_key() -> None:
    assert image_key("ferplus", "FER2013Test/fer0032220.png") == "fer0032220"
    assert image_key("rafdb", "basic/Image/aligned/test_0003_aligned.jpg") == "test_0003"
    assert image_key("rafdb", "basic/Image/original/test_0003.jpg") == "test_0003"
    assert image_key("affectnet", "689/737db2483489148d783ef278f43f486c0a97e140fc4b6b61b84363ca.jpg") == (
        "737db2483489148d783ef278f43f486c0a97e140fc4b6b61b84363ca"
    )


def test_parse_subset_arg(tmp_path: Path) -> None:
    path = write(tmp_path, "occ.txt", FERPLUS_OCCLUSION)
    assert parse_subset_arg(f"occlusion={path}") == ("occlusion", path)
    assert parse_subset_arg("pose30=missing.txt", must_exist=False) == ("pose30", Path("missing.txt"))
    with pytest.raises(argparse.ArgumentTypeError, match="expected NAME=PATH"):
        parse_subset_arg(str(path))
    with pytest.raises(argparse.ArgumentTypeError, match="expected NAME=PATH"):
        parse_subset_arg(f"={path}")
    with pytest.raises(argparse.ArgumentTypeError, match="may only contain"):
        parse_subset_arg(f"my subset={path}")
    with pytest.raises(argparse.ArgumentTypeError, match="not found"):
        parse_subset_arg(f"occlusion={tmp_path / 'missing.txt'}")


def test_add_subset_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "occ.txt", FERPLUS_OCCLUSION)
    parser = argparse.ArgumentParser()
    add_subset_argument(parser)
    args = parser.parse_args(["--subset", f"occlusion={path}", "--subset", f"again={path}"])
    assert args.subset == [("occlusion", path), ("again", path)]
    assert parser.parse_args([]).subset == []
    with pytest.raises(SystemExit):
        parser.parse_args(["--subset", "occlusion"])
    assert "expected NAME=PATH" in capsys.readouterr().err
