"""AffectNet example: readers of both provider layouts on small hand-made and generated sets, landmark mapping
(hand-computed), balancing, subset lists, bad images, and short end-to-end runs of examples/affectnet/train.py."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from examples.affectnet.data import (
    AFFECTNET_CLASSES,
    AffectNetDataset,
    BadImageError,
    ClassWeightedCrossEntropy,
    balanced_sample_weights,
    check_images,
    detect_layout,
    inverse_frequency_weights,
    load_affectnet,
    map_points,
    parse_landmarks,
    read_affectnet_csv,
    read_npy,
    reduce_68,
    stratified_holdout,
)
from examples.affectnet.train import affectnet_recipes, build_parser, main
from examples.common.engine import EpochSampler, resolve_config
from examples.common.subsets import image_key, parse_subset_list
from PIL import Image

HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
#: The published lists, copied byte for byte into the test fixtures (see tests/fixtures/subset_lists/README.md).
LISTS = Path(__file__).resolve().parents[1] / "fixtures" / "subset_lists" / "AffectNet_dir"
FAST = [
    "--backbone",
    "small",
    "--image-size",
    "32",
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--workers",
    "0",
    "--device",
    "cpu",
    "--seed",
    "0",
    "--max-steps-per-epoch",
    "2",
]


def hex_id(i: int) -> str:
    return f"{i:056x}"


def landmark_text(points: list[tuple[float, float]]) -> str:
    return ";".join(f"{v:g}" for p in points for v in p)


def grid_points(offset: float = 0.0) -> list[tuple[float, float]]:
    """68 distinct points: point p at (p + offset, 2 p)."""
    return [(p + offset, 2.0 * p) for p in range(68)]


def write_csv_set(root: Path, train_codes: list[int], val_codes: list[int], size: int = 64) -> Path:
    """Layout 1 by hand: random-colour JPEGs of ``size`` px, box (8, 8, 48, 48), grid landmarks."""
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for split, codes in (("training", train_codes), ("validation", val_codes)):
        rows = [HEADER]
        for i, code in enumerate(codes):
            ident = hex_id(1000 * (split == "validation") + i)
            rel = f"{i % 3 + 1}/{ident}.jpg"
            path = root / "Manually_Annotated_Images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(path, quality=90)
            rows.append(f"{rel},8,8,48,48,{landmark_text(grid_points())},{code},0.1,-0.2")
        (lists / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def gen1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.common.synthetic import Splits, generate_affectnet

    root = tmp_path_factory.mktemp("affectnet") / "layout1"
    generate_affectnet(root, Splits(train=48, test=16), layout="csv", image_size=64, seed=1)
    return root


@pytest.fixture(scope="module")
def gen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("numpy")
    from examples.common.synthetic import Splits, generate_affectnet

    root = tmp_path_factory.mktemp("affectnet") / "layout2"
    generate_affectnet(root, Splits(train=40, test=16), layout="npy", image_size=40, seed=2)
    return root


# ---------------------------------------------------------------------------------------------------------------
# Readers


def test_class_filtering_counts_dropped_codes(tmp_path: Path) -> None:
    train = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 1, 7]
    root = write_csv_set(tmp_path, train, [0, 7, 8])
    splits = load_affectnet(root, classes=8)
    r = splits["train"].report
    assert (r["rows"], r["kept"], r["dropped_total"]) == (14, 10, 4)
    assert r["dropped"] == {"8 none": 1, "9 uncertain": 1, "10 no_face": 2}
    assert r["class_counts"] == dict(zip(AFFECTNET_CLASSES, [1, 2, 1, 1, 1, 1, 1, 2], strict=True))
    assert splits["train"].labels().tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 1, 7]
    assert splits["test"].report["dropped"] == {"8 none": 1}
    seven = load_affectnet(root, classes=7)
    r7 = seven["train"].report
    assert r7["dropped"] == {"7 contempt": 2, "8 none": 1, "9 uncertain": 1, "10 no_face": 2}
    assert r7["kept"] == 8 and list(r7["class_counts"]) == list(AFFECTNET_CLASSES[:7])
    assert seven["test"].labels().tolist() == [0]
    # keys are the 56-hex ids (the published lists' ids), as image_key makes them
    assert splits["test"].keys() == [hex_id(1000), hex_id(1001)]
    assert image_key("affectnet", "1/" + hex_id(1000) + ".jpg") == hex_id(1000)


def test_malformed_rows_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "training.csv"
    good = f"1/{hex_id(1)}.jpg,0,0,10,10,{landmark_text(grid_points())},1,0,0"
    short = f"1/{hex_id(2)}.jpg,0,0,10,10,{';'.join(['1'] * 135)},1,0,0"
    path.write_text(f"{HEADER}\n{good}\n{short}\n")
    with pytest.raises(ValueError, match=r"training\.csv, line 3: facial_landmarks has 135 values"):
        read_affectnet_csv(path, tmp_path)
    path.write_text(f"{HEADER}\n{good}\n{good.replace(',1,0,0', ',12,0,0')}\n")
    with pytest.raises(ValueError, match=r"line 3: expression 12 is outside 0-10"):
        read_affectnet_csv(path, tmp_path)
    path.write_text(f"{HEADER}\n{good.replace('0,0,10,10', '0,0,0,10')}\n")
    with pytest.raises(ValueError, match=r"line 2: face box .* positive width"):
        read_affectnet_csv(path, tmp_path)
    values = ["1"] * 136
    values[72] = "x"  # x of point 36 (an eye corner: a value the reader uses)
    bad_value = f"1/{hex_id(3)}.jpg,0,0,10,10,{';'.join(values)},1,0,0"
    path.write_text(f"{HEADER}\n{bad_value}\n")
    with pytest.raises(ValueError, match=r"line 2: facial_landmarks value 'x'"):
        read_affectnet_csv(path, tmp_path)
    path.write_text("subDirectory_filePath,expression\n")
    with pytest.raises(ValueError, match="missing column"):
        read_affectnet_csv(path, tmp_path)
    # an empty landmark field means "no landmarks": NaN, counted
    path.write_text(f"{HEADER}\n{good.replace(landmark_text(grid_points()), '')}\n")
    split = read_affectnet_csv(path, tmp_path)
    assert split.report["without_landmarks"] == 1 and torch.isnan(split.landmarks).all()


def test_landmark_parsing_reduction_and_mapping_hand_computed(tmp_path: Path) -> None:
    values = parse_landmarks(landmark_text(grid_points()), "f.csv", 2)
    assert values is not None and len(values) == 136 and values[72:74] == [36.0, 72.0]
    pts = torch.tensor(values).reshape(68, 2)
    five = reduce_68(pts)
    # eyes: mean of 36..41 = 38.5 and 42..47 = 44.5 (y = 2 x); nose tip 30; mouth corners 48 and 54
    assert five.tolist() == [[38.5, 77.0], [44.5, 89.0], [30.0, 60.0], [48.0, 96.0], [54.0, 108.0]]
    used = parse_landmarks(landmark_text(grid_points()), "f.csv", 2, only_used=True)
    assert used is not None and len(used) == 30
    # box (8, 8, 48, 48) with margin 0.25: crop (-4, -4, 72, 72) (left, top, width, height); S = 36 -> x' = (x + 4) / 2
    mapped = map_points(five, (-4.0, -4.0, 72.0, 72.0), 36)
    assert mapped.tolist() == [[21.25, 40.5], [24.25, 46.5], [17.0, 32.0], [26.0, 50.0], [29.0, 56.0]]
    # the same through the dataset, which also pads the part of the grown box outside the image with zeros
    root = write_csv_set(tmp_path, [1], [1], size=64)
    split = load_affectnet(root)["train"]
    image, target, label, index, lm = AffectNetDataset(split, image_size=36, margin=0.25)[0]
    assert image.shape == (3, 36, 36) and image.dtype == torch.uint8
    assert (target, label, index) == (1, 1, 0)
    assert lm.dtype == torch.float32 and torch.allclose(lm, mapped)
    # the crop spans x in [-4, 68) of a 64-px image: output columns 0, 1 (x < 0) and 34, 35 (x >= 64) are padding
    for border in (image[:, :, :2], image[:, :2, :], image[:, :, -2:], image[:, -2:, :]):
        assert border.eq(0).all()
    assert image[:, 2:-2, 2:-2].float().mean() > 50
    # without margin the crop is the box: x' = (x - 8) * 30 / 48; points below the crop map outside (masked later)
    _, _, _, _, lm0 = AffectNetDataset(split, image_size=30)[0]
    assert torch.allclose(lm0, map_points(five, (8.0, 8.0, 48.0, 48.0), 30))
    assert lm0[4, 1] > 30  # the right mouth corner (y = 108) lies below the face crop


def test_read_npy_without_numpy_matches_numpy(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    cases = {
        "exp": np.array("3"),
        "str_wide": np.array("10"),
        "lnd": np.arange(136, dtype=np.float64).reshape(68, 2) / 3,
        "lnd32": np.arange(136, dtype=np.float32),
        "int": np.array(7, dtype=np.int64),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
        "bytes": np.array(b"5"),
    }
    for name, value in cases.items():
        np.save(tmp_path / f"{name}.npy", value)
        got, shape = read_npy(tmp_path / f"{name}.npy")
        assert shape == value.shape, name
        expected = value.item() if value.shape == () else value.reshape(-1).tolist()
        if isinstance(expected, bytes):
            expected = expected.decode()
        assert got == expected, name
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"obj\.npy: unsupported \.npy dtype"):
        read_npy(tmp_path / "obj.npy")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"not a \.npy file"):
        read_npy(tmp_path / "junk.npy")


def test_npy_layout_by_hand(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    for split, codes in (("train_set", ["1", "8", "7", "10"]), ("val_set", ["0", "2"])):
        (tmp_path / split / "images").mkdir(parents=True)
        ann = tmp_path / split / "annotations"
        ann.mkdir()
        for i, code in enumerate(codes):
            Image.new("RGB", (20, 20), (100, 50, 25)).save(tmp_path / split / "images" / f"{i}.jpg")
            np.save(ann / f"{i}_exp.npy", np.array(code) if i != 2 else np.array([code]))  # 0-d or 1-element
            if i != 2:  # no landmarks for image 2
                np.save(ann / f"{i}_lnd.npy", np.array(grid_points(), dtype=np.float32).reshape(-1))
            np.save(ann / f"{i}_val.npy", np.array("0.5"))
    splits = load_affectnet(tmp_path, classes=8)
    train = splits["train"]
    assert train.report["dropped"] == {"8 none": 1, "10 no_face": 1} and train.labels().tolist() == [1, 7]
    assert train.report["without_landmarks"] == 1 and train.keys() == ["0", "2"]
    assert torch.isnan(train.dataset(10)[1][4]).all()
    seven = load_affectnet(tmp_path, classes=7)["train"].report["dropped"]
    assert seven == {"7 contempt": 1, "8 none": 1, "10 no_face": 1}
    # 20 x 20 image, the whole image is the face: S = 10 -> coordinates halve
    _, _, _, _, lm = train.dataset(10)[0]
    assert torch.allclose(lm, reduce_68(torch.tensor(grid_points())) / 2)
    np.save(tmp_path / "val_set" / "annotations" / "1_exp.npy", np.array("12"))
    with pytest.raises(ValueError, match=r"1_exp\.npy: expression 12 is outside 0-10"):
        load_affectnet(tmp_path)


def test_both_layouts_are_read(gen1: Path, gen2: Path) -> None:
    assert detect_layout(gen1)[0] == "csv" and detect_layout(gen2)[0] == "npy"
    one = load_affectnet(gen1)
    assert one["train"].report["rows"] == 48 and one["test"].report["rows"] == 16
    assert one["train"].report["dropped_total"] >= 1  # the generator writes a few codes 8-10
    assert one["test"].report["class_counts"] == dict.fromkeys(AFFECTNET_CLASSES, 2)
    two = load_affectnet(gen2)
    assert two["train"].report["kept"] == 40 and two["test"].report["kept"] == 16
    assert torch.isnan(two["train"].boxes).all()  # no face box: the whole image is the face
    # layout 2 labels and landmarks agree with the generator's ground truth
    meta = (gen2 / "affectnet_meta.csv").read_text().splitlines()
    header = meta[0].split(",")
    truth = {
        (r[header.index("split")], r[header.index("id")]): int(r[header.index("label")])
        for r in (line.split(",") for line in meta[1:])
    }
    test_ids = two["test"].keys()
    assert two["test"].labels().tolist() == [truth[("val", k)] for k in test_ids]
    np = pytest.importorskip("numpy")
    lnd = torch.from_numpy(np.load(gen2 / "val_set" / "annotations" / "3_lnd.npy")).float()
    ds = two["test"].dataset(20)
    i = two["test"].keys().index("3")
    with Image.open(gen2 / "val_set" / "images" / "3.jpg") as im:
        scale = 20 / im.width
    assert torch.allclose(ds[i][4], reduce_68(lnd) * scale, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# Holdout, balancing


def test_stratified_holdout_is_deterministic_and_disjoint() -> None:
    labels = torch.tensor([0] * 100 + [1] * 20 + [2] * 3 + [3])
    train, hold = stratified_holdout(labels, 0.1, seed=5)  # a label tensor in, sorted positions out
    again = stratified_holdout(labels, 0.1, seed=5)
    assert (train, hold) == again and train == sorted(train) and hold == sorted(hold)
    assert not set(train) & set(hold) and len(train) + len(hold) == len(labels)
    assert Counter(labels[hold].tolist()) == {0: 10, 1: 2, 2: 1}  # a class of one image stays in training
    assert hold != stratified_holdout(labels, 0.1, seed=6)[1]
    assert len(stratified_holdout(labels, 0.0, seed=0)[1]) == 0


def test_oversampling_draws_classes_equally_often() -> None:
    labels = torch.tensor([0] * 600 + [1] * 60 + [2] * 12 + [3] * 3)
    weights = balanced_sample_weights(labels, 4)
    counts = torch.zeros(4)
    sampler = EpochSampler(len(labels), seed=0, weights=weights)
    for epoch in range(60):
        sampler.set_epoch(epoch)
        counts += torch.bincount(labels[list(sampler)], minlength=4)
    freq = counts / counts.sum()
    assert torch.allclose(freq, torch.full((4,), 0.25), atol=0.015), freq
    # without weights the draw follows the imbalance
    plain = EpochSampler(len(labels), seed=0)
    assert torch.bincount(labels[list(plain)], minlength=4).tolist() == [600, 60, 12, 3]


def test_weighted_loss_uses_inverse_class_frequency() -> None:
    labels = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    weights = inverse_frequency_weights(labels, 4)  # N / (C * count) = 10 / (4 * count); no image of class 3 -> 0
    assert torch.allclose(weights, torch.tensor([10 / 24, 10 / 12, 10 / 4, 0.0]))
    logits, targets = torch.randn(5, 4), torch.tensor([0, 1, 2, 2, 0])
    loss = ClassWeightedCrossEntropy(weights)(logits, targets)
    assert torch.allclose(loss, F.cross_entropy(logits, targets, weight=weights))
    assert torch.allclose(ClassWeightedCrossEntropy()(logits, targets), F.cross_entropy(logits, targets))


def test_authors_recipe_depends_on_balance(tmp_path: Path) -> None:
    def cfg(*extra: str) -> dict:
        args = build_parser().parse_args(["--data-dir", "x", "--output-dir", str(tmp_path), *extra])
        return resolve_config(args, affectnet_recipes(args.balance))

    plain = cfg("--recipe", "authors")
    assert (plain["lr"], plain["epochs"], plain["milestones"], plain["batch_size"], plain["margin"]) == (
        0.01,
        40,
        [12, 20, 32],
        256,
        0.03,
    )
    over = cfg("--recipe", "authors", "--balance", "oversample")
    assert (over["lr"], over["epochs"], over["milestones"], over["margin"]) == (0.015, 20, [6, 10, 16], 0.02)
    assert cfg("--recipe", "authors", "--lr", "0.5")["lr"] == 0.5
    assert cfg()["lr"] == 0.01 and cfg()["epochs"] == 40  # paper


# ---------------------------------------------------------------------------------------------------------------
# Subset lists


def test_published_affectnet_lists_parse() -> None:
    occ = parse_subset_list(LISTS / "occlusion_affectnet_list.txt", dataset="affectnet")
    p30 = parse_subset_list(LISTS / "pose_30_affectnet_list.txt", dataset="affectnet")
    p45 = parse_subset_list(LISTS / "pose_45_affectnet_list.txt", dataset="affectnet")
    assert (occ.format, len(occ)) == ("affectnet_occlusion", 683)
    assert (p30.format, len(p30), p30.duplicates) == ("affectnet_pose", 1944, 5)
    assert (p45.format, len(p45), p45.duplicates) == ("affectnet_region", 983, 2)
    assert all(len(k) == 56 for k in occ.keys + p30.keys + p45.keys)


def test_generated_lists_match_test_ids(gen1: Path) -> None:
    test = load_affectnet(gen1)["test"]
    index = {k: i for i, k in enumerate(test.keys())}
    for name, fmt in (
        ("occlusion_affectnet_list.txt", "affectnet_occlusion"),
        ("pose_30_affectnet_list.txt", "affectnet_pose"),
        ("pose_45_affectnet_list.txt", "affectnet_region"),
    ):
        lst = parse_subset_list(gen1 / name, dataset="affectnet")
        if not len(lst):
            continue
        assert lst.format == fmt
        for e in lst.entries:
            assert e.label == int(test.labels()[index[e.key]])


# ---------------------------------------------------------------------------------------------------------------
# Bad images


def corrupt(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # a truncated JPEG: the header reads, decoding fails


def test_missing_and_corrupt_images_are_named_and_counted(tmp_path: Path) -> None:
    root = write_csv_set(tmp_path, [0, 1, 2, 3, 1], [0, 1])
    split = load_affectnet(root)["train"]
    corrupt(split.path(1))
    missing = split.path(3)
    with pytest.raises(BadImageError, match=str(split.path(1)).replace("\\", "\\\\") + ".*--skip-bad-images"):
        split.dataset(16)[1]
    missing.unlink()
    split = load_affectnet(root)["train"]
    assert split.missing == [3] and split.report["missing_images"] == 1
    with pytest.raises(BadImageError, match=r"1 image\(s\) of the train split .* missing, e.g. .*" + missing.name):
        check_images(split, skip_bad=False, image_size=16)
    kept, bad = check_images(split, skip_bad=True, image_size=16)
    assert [b["path"] for b in bad] == [str(split.path(1)), str(missing)]
    assert "not found" in bad[1]["error"] and str(split.path(1)) in bad[0]["error"]
    assert len(kept) == 3 and kept.report["bad_images"] == 2 and kept.labels().tolist() == [0, 2, 1]
    assert kept.report["class_counts"]["happy"] == 1


@pytest.mark.slow
def test_corrupt_image_stops_the_run_or_is_skipped_and_reported(gen1: Path, tmp_path: Path, one_line_error) -> None:
    data = tmp_path / "data"
    shutil.copytree(gen1, data)
    split = load_affectnet(data)["train"]
    bad = split.path(3)
    corrupt(bad)
    argv = ["--data-dir", str(data), *FAST, "--holdout-fraction", "0", "--batch-size", "64"]  # one batch: every image
    with one_line_error(bad.name + ".*--skip-bad-images"):
        main([*argv, "--output-dir", str(tmp_path / "fail")])
    summary = main([*argv, "--output-dir", str(tmp_path / "skip"), "--skip-bad-images"])
    assert summary is not None
    written = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert written["data"]["bad_images"]["count"] == 1 and written["data"]["bad_images"]["checked"]
    assert written["data"]["bad_images"]["examples"][0]["path"] == str(bad)
    assert written["data"]["train"]["kept"] == len(split) - 1 and written["test"]["images"] == 16


# ---------------------------------------------------------------------------------------------------------------
# End to end


@pytest.mark.slow
def test_one_epoch_layout1_with_subsets(gen1: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra_list.txt"  # a published-format list with one id that is not in the test set
    lines = (gen1 / "pose_30_affectnet_list.txt").read_text().splitlines()
    extra.write_text("\n".join([*lines, f"3/{hex_id(77)}.jpg"]) + "\n")
    out = tmp_path / "out"
    subsets = [
        f"occlusion={gen1 / 'occlusion_affectnet_list.txt'}",
        f"pose45={gen1 / 'pose_45_affectnet_list.txt'}",
        f"extra={extra}",
    ]
    summary = main(
        [
            "--data-dir",
            str(gen1),
            "--output-dir",
            str(out),
            *FAST,
            "--balance",
            "oversample",
            "--face-margin",
            "0.1",
            "--holdout-fraction",
            "0.1",
            *[a for s in subsets for a in ("--subset", s)],
        ]
    )
    assert summary is not None
    for name in (
        "metrics.jsonl",
        "summary.json",
        "config.json",
        "confusion_matrix.png",
        "test_predictions.pt",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
    ):
        assert (out / name).is_file(), name
    written = json.loads((out / "summary.json").read_text())
    assert written["test"]["images"] == 16 and written["test"]["mean_class_accuracy"] is not None
    assert written["data"]["holdout"]["kept"] >= 4 and written["balance"]["mode"] == "oversample"
    assert written["data"]["provider_train"]["dropped_total"] >= 1
    assert written["config"]["regions"] == "fixed" and written["class_names"] == list(AFFECTNET_CLASSES)
    occlusion = len(parse_subset_list(gen1 / "occlusion_affectnet_list.txt", dataset="affectnet"))
    assert written["subsets"]["occlusion"]["matched"] == occlusion and written["subsets"]["occlusion"]["unmatched"] == 0
    assert written["subsets"]["extra"]["unmatched"] == 1 and written["subsets"]["extra"]["unmatched_examples"] == [
        hex_id(77)
    ]
    assert written["subsets"]["extra"]["label_disagreements"] == 0


@pytest.mark.slow
def test_one_epoch_layout2_with_landmark_regions_and_weighted_loss(gen2: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = main(
        [
            "--data-dir",
            str(gen2),
            "--output-dir",
            str(out),
            *FAST,
            "--regions",
            "landmarks",
            "--balance",
            "weighted-loss",
            "--classes",
            "7",
        ]
    )
    assert summary is not None
    written = json.loads((out / "summary.json").read_text())
    assert written["data"]["layout"] == "npy" and written["config"]["regions"] == "landmarks"
    assert written["class_names"] == list(AFFECTNET_CLASSES[:7])
    assert written["data"]["test"]["dropped"].get("7 contempt", 0) == 2 and written["test"]["images"] == 14
    assert set(written["balance"]["class_weights"]) == set(AFFECTNET_CLASSES[:7])
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow
def test_landmark_regions_layout1_and_resume(gen1: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [
        "--data-dir",
        str(gen1),
        "--output-dir",
        str(out),
        *FAST,
        "--regions",
        "landmarks",
        "--face-margin",
        "0.2",
        "--holdout-fraction",
        "0",
    ]
    main(argv)  # epoch 1 of 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    summary = main([*argv, "--epochs", "2", "--resume"])
    assert summary is not None
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert json.loads((out / "summary.json").read_text())["config"]["regions"] == "landmarks"
