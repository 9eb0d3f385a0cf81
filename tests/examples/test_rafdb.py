"""RAF-DB readers on generated data in both layouts and on excerpts of the published lists; end-to-end runs of
examples/rafdb/train.py (one epoch, tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from examples.common.folder_data import ImageListDataset, ImageRecord, stratified_holdout
from examples.common.synthetic import Splits, generate_rafdb
from examples.rafdb.data import (
    RAFDB_CLASSES,
    companion_label_file,
    detect_layout,
    load_rafdb,
    parse_rafdb_subset,
    read_label_file,
)
from examples.rafdb.train import main
from PIL import Image

# RAF_DB_dir/rafdb_occlusion_list.txt: the first lines (CRLF), with test_0003 repeated like the file's one
# duplicate (test_2464_aligned), no final newline
OCCLUSION = b"test_0003_aligned 3 4\r\ntest_0006_aligned 4 3\r\ntest_0003_aligned 3 4\r\ntest_0008_aligned 0 4"
# RAF_DB_dir/val_raf_db_list.txt + val_raf_db_label.txt: first lines, header "N 7", no final newline
POSE = b"0/test_0004_aligned.jpg\n4/test_0006_aligned.jpg\n2/test_0007_aligned.jpg\n"
POSE_LABELS = b"3 7\n0\n4\n2"

FAST = ["--backbone", "small", "--image-size", "32", "--workers", "0", "--batch-size", "8", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rafdb")
    generate_rafdb(out, Splits(train=28, test=21), seed=1)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Readers


def test_provider_layout_labels_and_splits(provider: Path) -> None:
    label_file = provider / "basic" / "EmoLabel" / "list_patition_label.txt"
    raw = label_file.read_bytes()
    assert not raw.endswith(b"\n")  # as shipped: no final newline
    first = raw.split(b"\n")[0].decode()
    name, official = first.split()
    data = load_rafdb(provider)
    assert data.layout == "provider" and data.root == provider / "basic"
    assert (len(data.train), len(data.test)) == (28, 21)
    assert all(r.key.startswith("train_") for r in data.train) and all(r.key.startswith("test_") for r in data.test)
    record = next(r for r in data.train if r.key == name[:-4])
    assert record.label == int(official) - 1  # 1-7 -> 0-6
    assert record.path == provider / "basic" / "Image" / "aligned" / f"{name[:-4]}_aligned.jpg"
    assert data.report["splits"]["train"]["class_counts"] == dict.fromkeys(RAFDB_CLASSES, 4)
    assert data.report["label_file_spelling"] == "list_patition_label.txt"
    # DIR may be basic/ itself
    assert detect_layout(provider / "basic") == ("provider", provider / "basic")


def test_label_mapping_is_the_providers_order(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes(b"train_00001.jpg 1\r\ntrain_00002.jpg 7\n\ntest_0001.jpg 4")  # CRLF, blank, no final newline
    assert read_label_file(path) == [(1, "train_00001.jpg", 0), (2, "train_00002.jpg", 6), (4, "test_0001.jpg", 3)]
    assert RAFDB_CLASSES[0] == "surprise" and RAFDB_CLASSES[3] == "happiness" and RAFDB_CLASSES[6] == "neutral"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"train_00001.jpg 8", "1..7"),
        (b"train_00001.jpg 0", "1..7"),
        (b"train_00001.jpg", "expected '<image> <label 1-7>'"),
        (b"val_00001.jpg 3", "not a RAF-DB name"),
        (b"train_00001.jpg 3\ntrain_00001.jpg 3", "listed twice"),
    ],
)
def test_label_file_errors_name_file_and_line(tmp_path: Path, text: bytes, message: str) -> None:
    path = tmp_path / "list_patition_label.txt"
    path.write_bytes(text)
    with pytest.raises(ValueError, match=message) as info:
        read_label_file(path)
    assert str(path) in str(info.value) and "line" in str(info.value)


def test_both_label_file_spellings(tmp_path: Path) -> None:
    out = tmp_path / "readme_spelling"
    generate_rafdb(
        out,
        Splits(train=7, test=7),
        label_file="list_partition_label.txt",
        final_newline=True,
        original=False,
        lists=False,
    )
    data = load_rafdb(out)
    assert data.report["label_file_spelling"] == "list_partition_label.txt"
    assert (len(data.train), len(data.test)) == (7, 7)
    # both spellings present: fine when identical, an error when they differ
    emo = out / "basic" / "EmoLabel"
    (emo / "list_patition_label.txt").write_bytes((emo / "list_partition_label.txt").read_bytes().strip())
    assert len(load_rafdb(out).train) == 7
    (emo / "list_patition_label.txt").write_text("train_00001.jpg 1")
    with pytest.raises(ValueError, match="both exist and differ"):
        load_rafdb(out)


def test_missing_label_file_and_images_are_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="EmoLabel"):
        load_rafdb(tmp_path)
    out = tmp_path / "data"
    generate_rafdb(out, Splits(train=7, test=7), original=False, lists=False)
    (out / "basic" / "Image" / "aligned" / "test_0002_aligned.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"test_0002_aligned\.jpg"):
        load_rafdb(out)
    with pytest.raises(FileNotFoundError, match="face box"):
        load_rafdb(out, images="original")


def test_kaggle_layout(tmp_path: Path) -> None:
    out = tmp_path / "kaggle"
    generate_rafdb(out, Splits(train=14, test=7), layout="kaggle", lists=False)
    assert (out / "train_labels.csv").read_text().startswith("image,label\n")
    data = load_rafdb(out)
    assert data.layout == "kaggle" and (len(data.train), len(data.test)) == (14, 7)
    record = data.test[0]
    assert record.key.startswith("test_") and "_aligned" not in record.key
    assert record.path.parent.name == str(record.label + 1)  # DATASET/test/<1-7>/
    assert record.path.parts[-4] == "DATASET"
    with pytest.raises(ValueError, match="aligned images only"):
        load_rafdb(out, images="original")


def test_original_images_box_crop_and_landmarks(provider: Path) -> None:
    data = load_rafdb(provider, images="original", landmarks=True)
    record = data.train[0]
    assert record.path.name == f"{record.key}.jpg" and record.box is not None and len(record.landmarks) == 5
    ds = data.dataset("train", 50, landmarks=True)
    image, target, label, index, points = ds[0]
    assert image.shape == (3, 50, 50) and image.dtype == torch.uint8 and index == 0 and target == label
    assert points.shape == (5, 2) and bool(((points >= 0) & (points <= 50)).all())
    # the eyes are above the mouth corners, the left eye left of the right one
    assert points[0, 0] < points[1, 0] and points[0, 1] < points[3, 1]
    with pytest.raises(ValueError, match="original"):
        load_rafdb(provider, landmarks=True)


def test_box_crop_maps_pixels_and_landmarks(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 30), (0, 0, 0))
    img.paste((255, 0, 0), (10, 5, 30, 25))  # the "face": a red 20x20 square
    img.save(tmp_path / "x.png")
    record = ImageRecord("x", tmp_path / "x.png", 2, box=(10, 5, 30, 25), landmarks=((20.0, 15.0),) * 5)
    image, _, _, _, points = ImageListDataset([record], 20, crop_to_box=True, landmarks=True)[0]
    assert bool((image[0] == 255).all()) and bool((image[1:] == 0).all())
    assert torch.allclose(points, torch.full((5, 2), 10.0))
    # a margin of 0.25 each side: 30 x 30 around the centre, the face fills the middle 20 of 30 pixels
    image, _, _, _, points = ImageListDataset([record], 30, crop_to_box=True, margin=0.25, landmarks=True)[0]
    assert int(image[0, 15, 15]) == 255 and int(image[0, 2, 15]) == 0
    assert torch.allclose(points, torch.full((5, 2), 15.0))


def test_stratified_holdout_is_seeded_and_per_class() -> None:
    labels = [0] * 10 + [1] * 20 + [2] * 1
    kept, held = stratified_holdout(labels, 0.1, seed=3)
    assert sorted(kept + held) == list(range(31))
    assert [labels[i] for i in held].count(0) == 1 and [labels[i] for i in held].count(1) == 2
    assert 30 in kept  # a class with one image keeps it
    assert stratified_holdout(labels, 0.1, seed=3) == (kept, held)
    assert stratified_holdout(labels, 0.1, seed=4) != (kept, held)
    assert stratified_holdout(labels, 0.0) == (list(range(31)), [])


# ---------------------------------------------------------------------------------------------------------------
# Published subset lists


def test_occlusion_list_crlf_duplicate_and_types(tmp_path: Path) -> None:
    path = tmp_path / "rafdb_occlusion_list.txt"
    path.write_bytes(OCCLUSION)
    subset = parse_rafdb_subset(path, name="occlusion")
    assert subset.format == "rafdb_occlusion" and subset.label_path is None
    assert subset.keys == ["test_0003", "test_0006", "test_0008"]
    assert subset.duplicates == 1
    assert [(e.label, e.kind) for e in subset.entries] == [(3, 4), (4, 3), (0, 4)]


def test_pose_list_with_companion_label_file(tmp_path: Path) -> None:
    for list_name, label_name in (
        ("val_raf_db_list.txt", "val_raf_db_label.txt"),
        ("val_raf_db_list_45.txt", "val_raf_db_label_45.txt"),
    ):
        (tmp_path / list_name).write_bytes(POSE)
        (tmp_path / label_name).write_bytes(POSE_LABELS)
        assert companion_label_file(tmp_path / list_name) == tmp_path / label_name
        subset = parse_rafdb_subset(tmp_path / list_name)
        assert subset.format == "rafdb_pose" and subset.label_path == tmp_path / label_name
        assert subset.keys == ["test_0004", "test_0006", "test_0007"]
        assert [e.label for e in subset.entries] == [0, 4, 2]
    (tmp_path / "val_raf_db_label.txt").write_bytes(b"3 7\n0\n4\n5")
    with pytest.raises(ValueError, match="disagrees"):
        parse_rafdb_subset(tmp_path / "val_raf_db_list.txt")
    (tmp_path / "val_raf_db_label.txt").write_bytes(b"4 7\n0\n4\n2\n1")
    with pytest.raises(ValueError, match="has 4 labels"):
        parse_rafdb_subset(tmp_path / "val_raf_db_list.txt")
    (tmp_path / "val_raf_db_label.txt").write_bytes(b"5 7\n0\n4\n2")
    with pytest.raises(ValueError, match="header says 5"):
        parse_rafdb_subset(tmp_path / "val_raf_db_list.txt")
    lone = tmp_path / "pose_only.txt"
    lone.write_bytes(POSE)
    assert companion_label_file(lone) is None and parse_rafdb_subset(lone).label_path is None


def test_generated_lists_match_the_published_formats(provider: Path) -> None:
    lists = provider / "lists"
    occlusion = (lists / "rafdb_occlusion_list.txt").read_bytes()
    assert b"\r\n" in occlusion and not occlusion.endswith(b"\n")
    subset = parse_rafdb_subset(lists / "rafdb_occlusion_list.txt")
    assert subset.duplicates == 1 and all(e.kind in (1, 2, 3, 4) for e in subset.entries)
    test = {r.key: r.label for r in load_rafdb(provider).test}
    assert all(test[e.key] == e.label for e in subset.entries)
    pose = parse_rafdb_subset(lists / "val_raf_db_list.txt")
    assert pose.label_path == lists / "val_raf_db_label.txt"
    assert all(test[e.key] == e.label for e in pose.entries)


# ---------------------------------------------------------------------------------------------------------------
# End to end


@pytest.mark.slow
def test_train_end_to_end_with_subsets(provider: Path, tmp_path: Path) -> None:
    lists = provider / "lists"
    out = tmp_path / "run"
    summary = main(
        [
            "--data-dir",
            str(provider),
            "--output-dir",
            str(out),
            "--epochs",
            "1",
            *FAST,
            "--subset",
            f"occlusion={lists / 'rafdb_occlusion_list.txt'}",
            "--subset",
            f"pose30={lists / 'val_raf_db_list.txt'}",
        ]
    )
    assert summary is not None
    saved = json.loads((out / "summary.json").read_text())
    assert saved["class_names"] == list(RAFDB_CLASSES) and saved["task"] == "rafdb"
    assert saved["test"]["images"] == 21 and saved["selected_epoch"] == 1
    assert saved["data"]["model_selection"]["valid"]["images"] == 7  # 10% of 4 per class -> 1 each
    assert saved["class_histograms"]["train"] == dict.fromkeys(RAFDB_CLASSES, 3)
    occlusion = saved["subsets"]["occlusion"]
    assert occlusion["unmatched"] == 0 and occlusion["duplicates"] == 1 and occlusion["label_disagreements"] == 0
    assert set(occlusion["accuracy_by_type"]) <= {"1", "2", "3", "4"} and occlusion["accuracy_by_type"]
    assert saved["data"]["subset_lists"]["pose30"]["label_file"].endswith("val_raf_db_label.txt")
    ckpt = torch.load(out / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert ckpt["class_names"] == list(RAFDB_CLASSES)


@pytest.mark.slow
def test_resume_and_baseline(provider: Path, tmp_path: Path, one_line_error) -> None:
    out = tmp_path / "resume"
    args = ["--data-dir", str(provider), "--output-dir", str(out), *FAST, "--model", "baseline"]
    main([*args, "--epochs", "1"])
    summary = main([*args, "--epochs", "2", "--resume"])
    assert summary is not None and summary["config"]["model"] == "baseline"
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    with one_line_error("holdout_fraction"):  # the data split must not change under a resumed run
        main([*args, "--epochs", "3", "--resume", "--holdout-fraction", "0.2"])


@pytest.mark.slow
def test_kaggle_and_landmark_regions_end_to_end(provider: Path, tmp_path: Path) -> None:
    kaggle = tmp_path / "kaggle"
    generate_rafdb(kaggle, Splits(train=14, test=7), layout="kaggle", lists=False)
    summary = main(
        [
            "--data-dir",
            str(kaggle),
            "--output-dir",
            str(tmp_path / "k"),
            "--epochs",
            "1",
            *FAST,
            "--holdout-fraction",
            "0",
        ]
    )
    assert summary is not None and summary["best_valid_accuracy"] is None and summary["data"]["layout"] == "kaggle"
    summary = main(
        [
            "--data-dir",
            str(provider),
            "--output-dir",
            str(tmp_path / "lm"),
            "--epochs",
            "1",
            *FAST,
            "--images",
            "original",
            "--face-margin",
            "0.1",
            "--regions",
            "landmarks",
        ]
    )
    assert summary is not None and summary["config"]["regions"] == "landmarks"
    with pytest.raises(SystemExit, match="needs --images original"):
        main(
            [
                "--data-dir",
                str(provider),
                "--output-dir",
                str(tmp_path / "bad"),
                *FAST,
                "--epochs",
                "1",
                "--regions",
                "landmarks",
            ]
        )
