"""FERPlus readers on tiny files written in the providers' exact formats; expected values are worked out by hand
from the provider's label rules (single votes zeroed first; see examples/ferplus/data.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from examples.ferplus.data import (
    FERPLUS_CLASSES,
    FERPlusDataset,
    detect_layout,
    draw_target,
    ferplus_loss,
    format_report,
    load_ferplus,
    majority_label,
    process_votes,
    read_ferplus_csv,
    read_ferplus_folders,
)
from PIL import Image
from torch.utils.data import DataLoader

NEW_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
OLD_HEADER = "Usage,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def approx(values: tuple[float, ...] | None, expected: list[float]) -> bool:
    return values is not None and all(math.isclose(a, b, abs_tol=1e-12) for a, b in zip(values, expected, strict=True))


# ---------------------------------------------------------------------------------------------------------------
# Label rules, hand-computed


def test_first_row_of_fer2013new_all_modes() -> None:
    # fer0000000: 4,0,0,1,3,2,0,0,0,0 -> single vote zeroed: 4,0,0,0,3,2,0,0,0,0, total 9
    votes = [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]
    # majority: 4 > 4.5 is false
    assert process_votes(votes, "majority").reason == "no_majority"
    assert majority_label(votes) == -1
    # crossentropy: take 4 (4 < 6.75), take 3 (7 >= 6.75 stops); 7 > 4.5 kept
    for mode in ("crossentropy", "probability"):
        assert approx(process_votes(votes, mode).target, [4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0])
    # multi_target: threshold 2.7 keeps 4 and 3, not 2; 7 > 4.5
    assert approx(process_votes(votes, "multi_target").target, [4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0])


def test_single_vote_removal_makes_a_majority() -> None:
    # fer0000001: 6,0,1,1,0,0,0,0,2,0 -> 6,0,0,0,0,0,0,0,2,0, total 8; 6 > 4
    votes = [6, 0, 1, 1, 0, 0, 0, 0, 2, 0]
    assert approx(process_votes(votes, "majority").target, [1, 0, 0, 0, 0, 0, 0, 0])
    assert majority_label(votes) == 0
    # crossentropy: 6 < 6 is false after taking it -> one class; multi: threshold 2.4 keeps only 6
    assert approx(process_votes(votes, "crossentropy").target, [1, 0, 0, 0, 0, 0, 0, 0])
    assert approx(process_votes(votes, "multi_target").target, [1, 0, 0, 0, 0, 0, 0, 0])


def test_ties_are_taken_together() -> None:
    # total 10; majority 4 > 5 false; crossentropy takes both 4s (8 >= 7.5); multi threshold 3 keeps both 4s
    votes = [0, 4, 4, 0, 0, 0, 0, 0, 2, 0]
    assert process_votes(votes, "majority").reason == "no_majority"
    assert approx(process_votes(votes, "crossentropy").target, [0, 0.5, 0.5, 0, 0, 0, 0, 0])
    assert approx(process_votes(votes, "multi_target").target, [0, 0.5, 0.5, 0, 0, 0, 0, 0])


def test_tie_pushes_count_over_three() -> None:
    # total 10; take 4 (count 1), then the three 2s at once (count 4 > 3) -> dropped
    votes = [4, 2, 2, 2, 0, 0, 0, 0, 0, 0]
    assert process_votes(votes, "crossentropy").reason == "too_many_classes"
    assert process_votes(votes, "probability").reason == "too_many_classes"
    # five-way tie in the first round
    assert process_votes([2, 2, 2, 2, 2, 0, 0, 0, 0, 0], "crossentropy").reason == "too_many_classes"
    # multi: threshold 3 keeps nothing of the five 2s -> 0 <= 5
    assert process_votes([2, 2, 2, 2, 2, 0, 0, 0, 0, 0], "multi_target").reason == "low_share"


def test_three_classes_kept() -> None:
    # total 9; take 5 (5 < 6.75), then both 2s (9, count 3)
    assert approx(
        process_votes([5, 2, 2, 0, 0, 0, 0, 0, 0, 0], "crossentropy").target, [5 / 9, 2 / 9, 2 / 9, 0, 0, 0, 0, 0]
    )
    # total 22 (the rule does not assume 10 annotators): 6, 11, 15 < 16.5 but 3 classes taken -> stop
    votes = [6, 5, 4, 3, 2, 2, 0, 0, 0, 0]
    assert approx(process_votes(votes, "crossentropy").target, [6 / 15, 5 / 15, 4 / 15, 0, 0, 0, 0, 0])


def test_unknown_tied_with_classes_is_not_kept() -> None:
    # total 10; take 4; next max 2: classes 1 and 2 kept (count 3), unknown reached -> not kept, stop; 8 > 5
    votes = [4, 2, 2, 0, 0, 0, 0, 0, 2, 0]
    assert approx(process_votes(votes, "crossentropy").target, [0.5, 0.25, 0.25, 0, 0, 0, 0, 0])
    # total 10; take 6 (6 < 7.5); next max 2 is unknown -> not kept, stop (NF never examined); 6 > 5
    votes = [6, 0, 0, 0, 0, 0, 0, 0, 2, 2]
    assert approx(process_votes(votes, "crossentropy").target, [1, 0, 0, 0, 0, 0, 0, 0])
    # total 9; take 5; next max 2: class 2 kept, unknown not; 7 > 4.5
    votes = [5, 0, 2, 0, 0, 0, 0, 0, 2, 0]
    assert approx(process_votes(votes, "crossentropy").target, [5 / 7, 0, 2 / 7, 0, 0, 0, 0, 0])
    assert approx(process_votes(votes, "multi_target").target, [1, 0, 0, 0, 0, 0, 0, 0])  # threshold 2.7


def test_unknown_tied_in_first_round_leaves_too_little() -> None:
    # total 6; first round max 3: class 0 kept, unknown reached and not kept; 3 <= 3 -> dropped
    assert process_votes([3, 0, 0, 0, 0, 0, 0, 0, 3, 0], "crossentropy").reason == "low_share"
    # total 10: class 0 and unknown tie at 4 -> crossentropy keeps 4 <= 5: dropped
    votes = [4, 0, 0, 0, 0, 0, 0, 0, 4, 2]
    assert process_votes(votes, "crossentropy").reason == "low_share"
    # multi_target: threshold 3 keeps 4 and unknown's 4 (8 > 5); top is the first of the tie: class 0
    assert approx(process_votes(votes, "multi_target").target, [1, 0, 0, 0, 0, 0, 0, 0])


def test_unknown_or_nf_on_top_is_dropped() -> None:
    votes = [2, 0, 0, 0, 0, 0, 0, 0, 6, 2]  # total 10, unknown 6
    for mode in ("majority", "crossentropy", "probability", "multi_target"):
        assert process_votes(votes, mode).reason == "top_unknown", mode
        assert process_votes([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], mode).reason == "top_nf", mode
        assert process_votes([1] * 10, mode).reason == "all_single_votes", mode


def test_multi_target_threshold_and_share() -> None:
    # 3 of 10 is exactly 0.3: kept
    assert approx(process_votes([7, 3, 0, 0, 0, 0, 0, 0, 0, 0], "multi_target").target, [0.7, 0.3, 0, 0, 0, 0, 0, 0])
    # 2 of 10 is below 0.3
    assert approx(process_votes([8, 2, 0, 0, 0, 0, 0, 0, 0, 0], "multi_target").target, [1, 0, 0, 0, 0, 0, 0, 0])
    # threshold 3 keeps only the 4; 4 <= 5 -> dropped
    assert process_votes([4, 0, 0, 2, 2, 2, 0, 0, 0, 0], "multi_target").reason == "low_share"
    # unknown over the threshold counts towards the share, is not a class: 5 and 4 of 9 kept -> [1, 0, ...]
    assert approx(process_votes([5, 0, 0, 0, 0, 0, 0, 0, 4, 0], "multi_target").target, [1, 0, 0, 0, 0, 0, 0, 0])


def test_majority_exactly_half_is_not_enough() -> None:
    assert majority_label([5, 5, 0, 0, 0, 0, 0, 0, 0, 0]) == -1
    assert majority_label([0, 0, 0, 0, 2, 1, 0, 7, 0, 0]) == 7  # fer0032220: 7 of 9 (single vote zeroed)


def test_bad_votes() -> None:
    with pytest.raises(ValueError, match="10 vote counts"):
        process_votes([1, 2, 3], "majority")
    with pytest.raises(ValueError, match="unknown label mode"):
        process_votes([0] * 10, "soft")


def test_draw_target() -> None:
    target = torch.tensor([0.5, 0.25, 0.25, 0, 0, 0, 0, 0])
    assert torch.equal(draw_target(target, "crossentropy"), target)
    multi = draw_target(target, "multi_target")
    assert torch.allclose(multi, torch.tensor([1.0, 1.0, 1.0, 0.001, 0.001, 0.001, 0.001, 0.001]))
    generator = torch.Generator().manual_seed(0)
    picks = torch.stack([draw_target(target, "probability", generator) for _ in range(2000)])
    assert torch.all(picks.sum(1) == 1) and torch.all(picks[:, 3:] == 0)
    share = picks.mean(0)
    assert abs(share[0].item() - 0.5) < 0.05 and abs(share[1].item() - 0.25) < 0.05


def test_ferplus_loss() -> None:
    uniform = torch.zeros(2, 8)
    soft = torch.tensor([[0.5, 0.5, 0, 0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0, 0, 0]])
    assert math.isclose(ferplus_loss(uniform, soft, "crossentropy").item(), math.log(8), rel_tol=1e-6)
    # logits [log 2, 0, ...]: p0 = 2/9, the others 1/9
    logits = torch.zeros(1, 8)
    logits[0, 0] = math.log(2)
    eps = 0.001
    t0 = torch.full((1, 8), eps)
    t0[0, 0] = 1.0
    t1 = torch.full((1, 8), eps)
    t1[0, 1] = 1.0
    assert math.isclose(ferplus_loss(logits, t0, "multi_target").item(), -math.log(2 / 9), rel_tol=1e-6)
    assert math.isclose(ferplus_loss(logits, t1, "multi_target").item(), -math.log(1 / 9), rel_tol=1e-6)
    one_hot = torch.zeros(1, 8)
    one_hot[0, 1] = 1.0
    assert math.isclose(ferplus_loss(logits, one_hot, "probability").item(), -math.log(1 / 9), rel_tol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# CSV layout


def pixel_row(seed: int) -> list[int]:
    return [(seed * 37 + j * 5) % 256 for j in range(48 * 48)]


def pixel_text(seed: int) -> str:
    return " ".join(map(str, pixel_row(seed)))


# (fer2013 emotion, Usage, Image name, votes); names skip ahead of the row index as in the real file
ROWS = [
    (0, "Training", "fer0000000.png", "4,0,0,1,3,2,0,0,0,0"),  # no majority; crossentropy 4/7, 3/7
    (0, "Training", "fer0000001.png", "6,0,1,1,0,0,0,0,2,0"),  # neutral
    (6, "Training", "", "0,0,0,0,0,0,0,0,0,10"),  # empty name
    (3, "Training", "fer0000002.png", "0,10,0,0,0,0,0,0,0,0"),  # happiness
    (3, "Training", "fer0000003.png", "0,0,0,0,0,0,0,0,2,8"),  # NF on top
    (4, "PublicTest", "fer0000005.png", "0,4,4,0,0,0,0,0,2,0"),  # no majority (valid is always majority)
    (5, "PublicTest", "fer0000006.png", "0,0,9,0,0,0,1,0,0,0"),  # surprise
    (2, "PrivateTest", "fer0000007.png", "3,0,0,5,0,0,0,0,2,0"),  # no majority (5 of 10)
    (1, "PrivateTest", "fer0000008.png", "0,0,0,0,2,1,0,7,0,0"),  # contempt
    (0, "PrivateTest", "fer0000009.png", "6,0,1,2,0,0,0,0,1,0"),  # neutral (6 of 8)
]


def write_csv_layout(
    directory: Path,
    rows: list[tuple[int, str, str, str]] = ROWS,
    names: bool = True,
    fer_lines: list[str] | None = None,
    new_lines: list[str] | None = None,
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    fer = directory / "fer2013.csv"
    new = directory / "fer2013new.csv"
    if fer_lines is None:
        fer_lines = ["emotion,pixels,Usage"] + [f"{e},{pixel_text(i)},{u}" for i, (e, u, _, _) in enumerate(rows)]
    if new_lines is None:
        if names:
            new_lines = [NEW_HEADER] + [f"{u},{n},{v}" for _, u, n, v in rows]
        else:
            new_lines = [OLD_HEADER] + [f"{u},{v}" for _, u, _, v in rows]
    fer.write_text("\n".join(fer_lines) + "\n")
    new.write_text("\n".join(new_lines) + "\n")
    return fer, new


def test_csv_layout_majority(tmp_path: Path) -> None:
    write_csv_layout(tmp_path)
    splits = load_ferplus(tmp_path)
    train, valid, test = splits["train"], splits["valid"], splits["test"]
    assert train.layout == "csv"
    assert train.keys() == ["fer0000001", "fer0000002"]
    assert [r.label for r in train.records] == [0, 1]
    assert valid.keys() == ["fer0000006"] and test.keys() == ["fer0000008", "fer0000009"]
    assert [r.label for r in test.records] == [7, 0]
    assert train.report["rows"] == 5
    assert train.report["dropped_empty_name"] == 1
    assert train.report["dropped"] == {"no_majority": 1, "top_nf": 1}
    assert train.report["kept"] == 2
    assert train.report["keys_from"] == "image_name"
    assert train.report["class_counts"] == dict.fromkeys(FERPLUS_CLASSES, 0) | {"neutral": 1, "happiness": 1}
    assert valid.report["dropped"] == {"no_majority": 1}
    assert test.report["rows"] == 3 and test.report["kept"] == 2
    # pixels of the kept rows, in order (rows 1 and 3 of the file for train)
    assert train.pixels is not None and train.pixels.shape == (2, 48, 48) and train.pixels.dtype == torch.uint8
    assert train.pixels[0].flatten().tolist() == pixel_row(1)
    assert train.pixels[1].flatten().tolist() == pixel_row(3)
    assert test.pixels is not None and test.pixels[1].flatten().tolist() == pixel_row(9)
    assert train.key_to_index() == {"fer0000001": 0, "fer0000002": 1}
    assert train.labels().tolist() == [0, 1]
    text = format_report(splits)
    assert "train (csv, majority" in text and "5 rows, 1 without image name" in text and "top_nf 1" in text


def test_report_accounts_for_every_row(tmp_path: Path) -> None:
    write_csv_layout(tmp_path)
    for mode in ("majority", "crossentropy", "probability", "multi_target"):
        for split in load_ferplus(tmp_path, mode).values():
            r = split.report
            assert r["rows"] == r["dropped_empty_name"] + sum(r["dropped"].values()) + r["kept"]
            assert sum(r["class_counts"].values()) == r["kept"]


def test_csv_layout_crossentropy_applies_to_train_only(tmp_path: Path) -> None:
    write_csv_layout(tmp_path)
    splits = load_ferplus(tmp_path, "crossentropy")
    train = splits["train"]
    assert train.label_mode == "crossentropy" and splits["valid"].label_mode == "majority"
    assert train.keys() == ["fer0000000", "fer0000001", "fer0000002"]
    assert train.records[0].label == -1
    expected = torch.tensor([[4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0]])
    assert torch.allclose(train.targets(), expected)
    assert train.report["without_majority_label"] == 1
    assert train.report["dropped"] == {"top_nf": 1}
    # valid: 0,4,4 tie would be kept by crossentropy but valid uses majority
    assert splits["valid"].keys() == ["fer0000006"]


def test_csv_layout_older_version_without_names(tmp_path: Path) -> None:
    write_csv_layout(tmp_path, names=False)
    splits = load_ferplus(tmp_path, splits=("train",))
    train = splits["train"]
    assert list(splits) == ["train"]
    # keys from the 0-based row index; the empty-name row is now dropped by its NF votes
    assert train.keys() == ["fer0000001", "fer0000003"]
    assert train.report["keys_from"] == "row_index"
    assert train.report["dropped_empty_name"] == 0
    assert train.report["dropped"] == {"no_majority": 1, "top_nf": 2}


def test_dataset_items_csv(tmp_path: Path) -> None:
    write_csv_layout(tmp_path)
    test = load_ferplus(tmp_path)["test"]
    dataset = FERPlusDataset(test, image_size=48)
    image, target, label, index = dataset[1]
    assert image.shape == (3, 48, 48) and image.dtype == torch.uint8
    assert image[0].flatten().tolist() == pixel_row(9)
    assert torch.equal(image[0], image[2])
    assert target.dtype == torch.float32 and target.tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert (label, index) == (0, 1)
    big = test.dataset(image_size=96)
    image96, *_ = big[0]
    assert image96.shape == (3, 96, 96) and image96.dtype == torch.uint8
    batch = next(iter(DataLoader(big, batch_size=2)))
    assert batch[0].shape == (2, 3, 96, 96) and batch[1].shape == (2, 8)
    assert batch[2].dtype == torch.int64 and batch[2].tolist() == [7, 0] and batch[3].tolist() == [0, 1]
    with pytest.raises(IndexError):
        dataset[2]


def test_dataset_draws_probability_targets(tmp_path: Path) -> None:
    write_csv_layout(tmp_path)
    train = load_ferplus(tmp_path, "probability")["train"]
    dataset = FERPlusDataset(train, image_size=48, generator=torch.Generator().manual_seed(0))
    drawn = {tuple(dataset[0][1].tolist()) for _ in range(50)}
    # stored 4/7 neutral, 3/7 anger: both one-hot draws appear, nothing else
    assert drawn == {(1.0, 0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 1.0, 0, 0, 0)}
    stored = FERPlusDataset(train, image_size=48, draw_targets=False)[0][1]
    assert torch.allclose(stored, torch.tensor([4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0]))


def test_dataset_multi_target_draw(tmp_path: Path) -> None:
    write_csv_layout(tmp_path)
    train = load_ferplus(tmp_path, "multi_target")["train"]
    target = FERPlusDataset(train, image_size=48)[0][1]
    assert torch.allclose(target, torch.tensor([1.0, 0.001, 0.001, 0.001, 1.0, 0.001, 0.001, 0.001]))


# errors -----------------------------------------------------------------------------------------------------------


def base_lines() -> tuple[list[str], list[str]]:
    fer = ["emotion,pixels,Usage"] + [f"{e},{pixel_text(i)},{u}" for i, (e, u, _, _) in enumerate(ROWS)]
    new = [NEW_HEADER] + [f"{u},{n},{v}" for _, u, n, v in ROWS]
    return fer, new


@pytest.mark.parametrize(
    ("which", "line", "text", "message"),
    [
        ("new", 3, "Training,fer0000001.png,6,0,1,1,0,0,0,0,2", r"fer2013new\.csv, line 3: 11 fields, expected 12"),
        ("new", 4, "Training,,0,0,0,0,0,0,0,0,0,x", r"fer2013new\.csv, line 4: vote count for 'NF'"),
        (
            "new",
            5,
            "Training,fer0000002.png,0,10,0,0,0,-1,0,0,0,0",
            r"fer2013new\.csv, line 5: vote count for 'disgust'",
        ),
        ("new", 2, "Train,fer0000000.png,4,0,0,1,3,2,0,0,0,0", r"fer2013new\.csv, line 2: unknown Usage 'Train'"),
        ("fer", 3, "0," + " ".join(["1"] * 2303) + ",Training", r"fer2013\.csv, line 3: 'pixels' has 2303 values"),
        ("fer", 4, "6," + " ".join(["256"] * 2304) + ",Training", r"fer2013\.csv, line 4: 'pixels' must be .*'256'"),
        ("fer", 5, "3," + " ".join(["1.5"] * 2304) + ",Training", r"fer2013\.csv, line 5: 'pixels' must be .*'1\.5'"),
        ("fer", 2, "0,1 2 3", r"fer2013\.csv, line 2: 2 fields, expected 3"),
        ("fer", 6, "4," + pixel_text(0) + ",Validation", r"fer2013\.csv, line 6: unknown Usage 'Validation'"),
        ("fer", 7, "5," + pixel_text(0) + ",Training", r"fer2013\.csv, line 7 .*and .*fer2013new\.csv, line 7 .*Usage"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, which: str, line: int, text: str, message: str) -> None:
    fer, new = base_lines()
    (fer if which == "fer" else new)[line - 1] = text
    write_csv_layout(tmp_path, fer_lines=fer, new_lines=new)
    with pytest.raises(ValueError, match=message):
        load_ferplus(tmp_path)


def test_row_count_mismatch(tmp_path: Path) -> None:
    fer, new = base_lines()
    write_csv_layout(tmp_path, fer_lines=fer, new_lines=new[:-1])
    with pytest.raises(ValueError, match=r"more data rows than .*fer2013new\.csv \(9\)"):
        load_ferplus(tmp_path)
    write_csv_layout(tmp_path, fer_lines=fer[:-2], new_lines=new)
    with pytest.raises(ValueError, match=r"fer2013\.csv has 8 data rows but .*fer2013new\.csv has 10"):
        load_ferplus(tmp_path)


def test_missing_columns(tmp_path: Path) -> None:
    fer, new = base_lines()
    new[0] = NEW_HEADER.replace(",NF", "")
    write_csv_layout(tmp_path, fer_lines=fer, new_lines=new)
    with pytest.raises(ValueError, match=r"fer2013new\.csv: missing column\(s\) NF"):
        load_ferplus(tmp_path)
    fer, new = base_lines()
    fer[0] = "emotion,pixel,Usage"
    write_csv_layout(tmp_path, fer_lines=fer, new_lines=new)
    with pytest.raises(ValueError, match=r"fer2013\.csv: missing column\(s\) pixels"):
        load_ferplus(tmp_path)


def test_duplicate_image_name_is_an_error(tmp_path: Path) -> None:
    fer, new = base_lines()
    new[2] = "Training,fer0000000.png,6,0,1,1,0,0,0,0,2,0"
    write_csv_layout(tmp_path, fer_lines=fer, new_lines=new)
    with pytest.raises(ValueError, match=r"line 3: image 'fer0000000' appears twice .*line 2"):
        load_ferplus(tmp_path)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"fer2013\.csv and fer2013new\.csv.*FER2013Train/label\.csv"):
        detect_layout(tmp_path)
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    with pytest.raises(FileNotFoundError, match=r"found .*fer2013\.csv but not fer2013new\.csv"):
        load_ferplus(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"fer2013new\.csv"):
        read_ferplus_csv(tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_ferplus(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------------------------
# Folder layout

# first rows of the provider's data/FER2013Test/label.csv
TEST_LABELS = [
    'fer0032220.png,"(0, 0, 48, 48)",0,0,0,0,2,1,0,7,0,0',  # contempt (7 of 9)
    'fer0032222.png,"(0, 0, 48, 48)",3,0,0,5,0,0,0,0,2,0',  # 5 of 10: no majority
    'fer0032223.png,"(0, 0, 48, 48)",6,0,1,2,0,0,0,0,1,0',  # neutral (6 of 8)
    'fer0032225.png,"(0, 0, 48, 48)",0,0,0,0,9,0,1,0,0,0',  # anger
]


def grey_png(path: Path, value: int) -> None:
    Image.frombytes("L", (48, 48), bytes([(value + j) % 256 for j in range(48 * 48)])).save(path)


def write_folder_layout(root: Path) -> None:
    for folder, lines in [
        ("FER2013Train", ["fer0000000.png,4,0,0,1,3,2,0,0,0,0", "fer0000001.png,6,0,1,1,0,0,0,0,2,0"]),
        ("FER2013Valid", ['fer0028709.png,"(0, 0, 48, 48)",0,0,9,0,0,0,1,0,0,0']),
        ("FER2013Test", TEST_LABELS),
    ]:
        (root / folder).mkdir(parents=True)
        (root / folder / "label.csv").write_text("\r\n".join(lines) + "\r\n")
        for k, line in enumerate(lines):
            grey_png(root / folder / line.split(",")[0], 10 * k)


def test_folder_layout(tmp_path: Path) -> None:
    write_folder_layout(tmp_path)
    assert detect_layout(tmp_path)[0] == "folder"
    splits = load_ferplus(tmp_path, "crossentropy")
    train, valid, test = splits["train"], splits["valid"], splits["test"]
    assert train.layout == "folder" and train.pixels is None
    assert train.keys() == ["fer0000000", "fer0000001"]
    assert torch.allclose(train.targets()[0], torch.tensor([4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0]))
    assert valid.keys() == ["fer0028709"] and valid.records[0].label == 2
    assert test.keys() == ["fer0032220", "fer0032223", "fer0032225"]
    assert [r.label for r in test.records] == [7, 0, 4]
    assert test.report["rows"] == 4 and test.report["dropped"] == {"no_majority": 1}
    assert test.report["keys_from"] == "file_name"
    assert test.records[1].line == 3
    image, target, label, index = FERPlusDataset(test, image_size=48)[1]
    # fer0032223 is the third line of label.csv, written with value 20
    assert image.shape == (3, 48, 48) and image[1].flatten().tolist() == [(20 + j) % 256 for j in range(48 * 48)]
    assert (label, index) == (0, 1) and target.tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert FERPlusDataset(test, image_size=64)[0][0].shape == (3, 64, 64)


def test_folder_layout_under_data(tmp_path: Path) -> None:
    write_folder_layout(tmp_path / "data")
    layout, paths = detect_layout(tmp_path)
    assert layout == "folder" and paths["root"] == tmp_path / "data"


def test_both_layouts_prefer_csv(tmp_path: Path) -> None:
    write_folder_layout(tmp_path)
    write_csv_layout(tmp_path)
    assert detect_layout(tmp_path)[0] == "csv"
    assert load_ferplus(tmp_path)["test"].keys() == ["fer0000008", "fer0000009"]
    assert load_ferplus(tmp_path, layout="folder")["test"].keys() == ["fer0032220", "fer0032223", "fer0032225"]


def test_folder_layout_errors(tmp_path: Path) -> None:
    write_folder_layout(tmp_path)
    label_csv = tmp_path / "FER2013Test" / "label.csv"
    (tmp_path / "FER2013Test" / "fer0032225.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) listed in .*label\.csv are missing.*fer0032225\.png"):
        read_ferplus_folders(tmp_path, splits=("test",))
    label_csv.write_text("\n".join([*TEST_LABELS[:2], "fer0032223.png,6,0,1,2,0,0,0,0,1", TEST_LABELS[3]]))
    with pytest.raises(ValueError, match=r"label\.csv, line 3: 10 fields, expected 12 .* or 11"):
        read_ferplus_folders(tmp_path, splits=("test",))
    label_csv.write_text('fer0032220.png,"box",0,0,0,0,2,1,0,7,0,0\n')
    with pytest.raises(ValueError, match=r"label\.csv, line 1: face box"):
        read_ferplus_folders(tmp_path, splits=("test",))


def test_unreadable_image_names_its_path(tmp_path: Path) -> None:
    write_folder_layout(tmp_path)
    bad = tmp_path / "FER2013Test" / "fer0032223.png"
    bad.write_bytes(b"not a png")
    test = load_ferplus(tmp_path)["test"]
    dataset = FERPlusDataset(test, image_size=48)
    dataset[0]
    with pytest.raises(OSError, match=r"cannot read FERPlus image .*fer0032223\.png"):
        dataset[1]
