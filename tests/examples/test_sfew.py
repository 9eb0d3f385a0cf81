"""SFEW readers on generated data (frames and aligned-face variants): explicit folder-name mapping, per-class
counts, which validation set is used; plain subset lists; end-to-end runs of examples/sfew/train.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from examples.common.synthetic import Splits, generate_sfew
from examples.sfew.data import (
    SFEW_CLASSES,
    SHIPPED_FOLDERS,
    detect_variant,
    folder_class,
    load_sfew,
    parse_sfew_subset,
    read_split_folder,
)
from examples.sfew.train import main

FAST = ["--backbone", "small", "--image-size", "32", "--workers", "0", "--batch-size", "8", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sfew(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sfew")
    generate_sfew(out, Splits(train=28, test=14), seed=2, face_size=48, frame_size=(90, 72))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Readers


def test_both_variants_counts_and_validation_set(sfew: Path) -> None:
    data = load_sfew(sfew)  # both present: the aligned faces
    assert data.variant == "aligned"
    assert (len(data.train), len(data.val)) == (28, 14)
    assert data.notes["validation_set"]["folder"] == "Val_Aligned_Faces_new"
    assert data.notes["validation_set"]["not_used"] == ["Val"]
    frames = load_sfew(sfew, "frames")
    assert frames.notes["validation_set"]["folder"] == "Val" and frames.variant == "frames"
    train = frames.report["splits"]["train"]
    assert train["folders"] == {
        name: {"class": cls, "images": 4} for name, cls in zip(SHIPPED_FOLDERS, SFEW_CLASSES, strict=True)
    }
    assert frames.report["splits"]["val"]["class_counts"] == dict.fromkeys(SFEW_CLASSES, 2)
    # frames are 5:4 pictures; the dataset makes them square
    image, target, label, _ = frames.dataset(frames.val, 40, fit="pad")[0]
    assert image.shape == (3, 40, 40) and image.dtype == torch.uint8 and target == label == frames.val[0].label
    assert int(image[:, 0, 20].sum()) == 0  # pad: black bands above and below


def test_folder_names_are_mapped_explicitly(tmp_path: Path) -> None:
    assert [folder_class(n) for n in SHIPPED_FOLDERS] == list(range(7))
    assert folder_class("Happiness") == 3 and folder_class("sadness") == 5 and folder_class("ANGER") == 0
    out = tmp_path / "renamed"
    generate_sfew(
        out,
        Splits(train=7, test=7),
        variant="frames",
        face_size=32,
        frame_size=(40, 32),
        folder_names=("Anger", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise"),
    )
    data = load_sfew(out)
    assert data.report["splits"]["train"]["class_counts"] == dict.fromkeys(SFEW_CLASSES, 1)


def test_unknown_or_missing_class_folder_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "bad"
    generate_sfew(out, Splits(train=7, test=7), variant="aligned", face_size=32)
    train = out / "Train_Aligned_Faces"
    (train / "Happy").rename(train / "Hapy")
    with pytest.raises(ValueError, match="'Hapy'") as info:
        read_split_folder(train)
    assert str(train / "Hapy") in str(info.value)
    (train / "Hapy").rename(train / "Happy")
    shutil.rmtree(train / "Sad")
    with pytest.raises(FileNotFoundError, match="Sad"):
        load_sfew(out)
    (train / "Sad").mkdir()
    (train / "Sadness").mkdir()
    with pytest.raises(ValueError, match="both class 'sad'"):
        read_split_folder(train)


def test_non_images_are_skipped_and_counted(tmp_path: Path) -> None:
    out = tmp_path / "extra"
    generate_sfew(out, Splits(train=7, test=7), variant="aligned", face_size=32)
    train = out / "Train_Aligned_Faces"
    (train / "Happy" / "Thumbs.db").write_bytes(b"\0")
    (train / "Happy" / ".DS_Store").write_bytes(b"\0")
    (train / "readme.txt").write_text("loose file")
    records, report = read_split_folder(train)
    assert len(records) == 7 and report["skipped_files"] == 2 and report["loose_files"] == 1


def test_missing_variant_names_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "Train").mkdir()
    with pytest.raises(FileNotFoundError, match="Val_Aligned_Faces_new") as info:
        detect_variant(tmp_path)
    assert "found folders: Train" in str(info.value)


def test_subset_list_formats(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(b"Happy/a_1.png 3 1\r\nb_2.png sad\r\nAngry/c_3\r\nHappy/a_1.png 3 1")
    subset = parse_sfew_subset(path, name="mine")
    assert subset.keys == ["a_1", "b_2", "c_3"] and subset.duplicates == 1
    assert [(e.label, e.kind) for e in subset.entries] == [(3, 1), (5, None), (0, None)]
    path.write_text("Happy/a_1.png 5\n")
    with pytest.raises(ValueError, match="disagree"):
        parse_sfew_subset(path)
    path.write_text("Contempt/a_1.png\n")
    with pytest.raises(ValueError, match="'Contempt'"):
        parse_sfew_subset(path)


# ---------------------------------------------------------------------------------------------------------------
# End to end


@pytest.mark.slow
def test_train_end_to_end_with_subset(sfew: Path, tmp_path: Path) -> None:
    val = sorted((sfew / "Val_Aligned_Faces_new" / "Happy").iterdir())
    listing = tmp_path / "happy.txt"
    listing.write_text("".join(f"Happy/{p.name} 3 {i % 2}\n" for i, p in enumerate(val)) + "Happy/absent.png\n")
    out = tmp_path / "run"
    summary = main(
        ["--data-dir", str(sfew), "--output-dir", str(out), "--epochs", "1", *FAST, "--subset", f"happy={listing}"]
    )
    assert summary is not None
    saved = json.loads((out / "summary.json").read_text())
    assert saved["class_names"] == list(SFEW_CLASSES) and saved["task"] == "sfew"
    assert saved["validation_set"]["folder"] == "Val_Aligned_Faces_new"
    assert saved["test"]["images"] == 14 and saved["data"]["model_selection"]["valid"]["images"] == 7
    assert saved["data"]["splits"]["val"]["folders"]["Happy"]["images"] == 2
    happy = saved["subsets"]["happy"]
    assert happy["matched"] == 2 and happy["unmatched"] == 1 and happy["label_disagreements"] == 0
    assert set(happy["accuracy_by_type"]) == {"0", "1"}
    assert saved["config"]["subset"] == [f"happy={listing}"]
    ckpt = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["class_names"] == list(SFEW_CLASSES)


@pytest.mark.slow
def test_frames_resume_and_baseline(sfew: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "resume"
    common = ["--data-dir", str(sfew), "--output-dir", str(out), *FAST, "--model", "baseline", "--fit", "pad"]
    args = [*common, "--layout", "frames"]
    main([*args, "--epochs", "1"])
    summary = main([*args, "--epochs", "2", "--resume"])
    assert summary is not None and summary["validation_set"]["folder"] == "Val"
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    with pytest.raises(SystemExit) as info:
        main([*common, "--epochs", "3", "--resume"])  # auto picks the aligned faces: other data
    assert info.value.code == 2 and "layout: checkpoint 'frames' vs now 'aligned'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no landmarks in SFEW
        main([*args, "--epochs", "1", "--regions", "landmarks"])
