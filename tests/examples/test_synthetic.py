"""The synthetic FERPlus / AffectNet generator writes the providers' exact formats, deterministically."""

from __future__ import annotations

import csv
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from examples.common import synthetic as syn
from PIL import Image

FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
AFFECTNET_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
)
SIZES = {"train": 80, "valid": 24, "test": 80}


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def ferplus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("ferplus")
    return syn.generate_ferplus(out, syn.Splits(**SIZES), seed=3, layout="both")


@pytest.fixture(scope="module")
def ferplus_rows(ferplus: dict) -> tuple[list[list[str]], list[list[str]]]:
    root = Path(ferplus["root"])
    with open(root / "fer2013.csv", newline="") as fh:
        fer = list(csv.reader(fh))
    with open(root / "fer2013new.csv", newline="") as fh:
        new = list(csv.reader(fh))
    return fer, new


@pytest.fixture(scope="module")
def affectnet(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("affectnet")
    return syn.generate_affectnet(out, syn.Splits(train=60, test=72), seed=5, layout="csv", image_size=96)


# ------------------------------------------------------------------------------------------------ FERPlus


def test_fer2013_csv_format(ferplus_rows: tuple[list[list[str]], list[list[str]]]) -> None:
    fer, _ = ferplus_rows
    assert fer[0] == ["emotion", "pixels", "Usage"]
    rows = fer[1:]
    assert len(rows) == sum(SIZES.values())
    usages = [r[2] for r in rows]
    assert usages == ["Training"] * 80 + ["PublicTest"] * 24 + ["PrivateTest"] * 80
    for emotion, pixels, _ in rows:
        assert 0 <= int(emotion) <= 6
        values = pixels.split(" ")
        assert len(values) == 2304
        assert all(v.isdigit() and 0 <= int(v) <= 255 for v in values)


def test_fer2013new_csv_format(ferplus_rows: tuple[list[list[str]], list[list[str]]]) -> None:
    fer, new = ferplus_rows
    assert ",".join(new[0]) == FERPLUS_HEADER
    rows = new[1:]
    assert len(rows) == len(fer) - 1
    empty = 0
    for index, row in enumerate(rows):
        assert len(row) == 12
        assert row[0] == fer[index + 1][2]  # same order and split as fer2013.csv
        if row[1]:
            assert row[1] == f"fer{index:07d}.png"
        else:
            empty += 1
        votes = [int(v) for v in row[2:]]
        assert sum(votes) == 10 and min(votes) >= 0
    assert empty >= 1


def test_votes_cover_every_label_case(ferplus_rows: tuple[list[list[str]], list[list[str]]]) -> None:
    votes = [[int(v) for v in row[2:]] for row in ferplus_rows[1][1:]]
    assert any(1 in v for v in votes), "single (outlier) votes"
    assert any(v[8] == max(v) and v[8] > 0 for v in votes), "unknown on top"
    assert any(v[9] == max(v) and v[9] > 0 for v in votes), "NF on top"
    no_majority = [v for v in votes if syn.majority_label(v) < 0 and max(v[:8]) == max(v)]
    assert no_majority, "class votes without a majority"
    assert any(sum(c >= 3 for c in v[:8]) >= 2 and syn.majority_label(v) >= 0 for v in votes), "ambiguous"
    kept = [syn.majority_label(v) for v in votes]
    assert set(range(8)) <= set(kept)
    assert 0.75 < sum(k >= 0 for k in kept) / len(kept) < 0.97


def test_majority_rule() -> None:
    assert syn.majority_label([4, 0, 0, 1, 3, 2, 0, 0, 0, 0]) == -1  # 4 of 9 after dropping the single vote
    assert syn.majority_label([5, 0, 0, 1, 3, 0, 0, 0, 1, 0]) == 0  # 5 of 8
    assert syn.majority_label([1, 0, 0, 0, 3, 0, 0, 0, 6, 0]) == -1  # unknown on top
    assert syn.majority_label([1] * 10) == -1


def test_older_fer2013new_without_names(tmp_path: Path) -> None:
    syn.generate_ferplus(tmp_path, syn.Splits(train=10, valid=4, test=6), with_image_names=False)
    with open(tmp_path / "fer2013new.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert ",".join(rows[0]) == FERPLUS_HEADER.replace("Image name,", "")
    assert all(len(r) == 11 for r in rows)


def test_provider_folders(ferplus: dict, ferplus_rows: tuple[list[list[str]], list[list[str]]]) -> None:
    root = Path(ferplus["root"])
    fer, new = ferplus_rows
    pixels = {row[1]: fer[i + 1][1] for i, row in enumerate(new[1:]) if row[1]}
    seen = 0
    for usage, folder in (("Training", "FER2013Train"), ("PublicTest", "FER2013Valid"), ("PrivateTest", "FER2013Test")):
        text = (root / folder / "label.csv").read_text()
        assert "\r" not in text
        rows = list(csv.reader(text.splitlines()))
        expected = [r for r in new[1:] if r[0] == usage and r[1]]
        assert [r[0] for r in rows] == [r[1] for r in expected]
        for row, ref in zip(rows, expected, strict=True):
            assert row[1] == "(0, 0, 48, 48)" and row[2:] == ref[2:]
        line = text.splitlines()[0]
        assert re.fullmatch(r'fer\d{7}\.png,"\(0, 0, 48, 48\)",(\d+,){9}\d+', line)
        for row in rows[:5]:
            with Image.open(root / folder / row[0]) as im:
                assert im.mode == "L" and im.size == (48, 48)
                assert " ".join(str(v) for v in im.tobytes()) == pixels[row[0]]
            seen += 1
    assert seen == 15


def test_subset_lists(ferplus: dict, ferplus_rows: tuple[list[list[str]], list[list[str]]]) -> None:
    root = Path(ferplus["root"])
    new = ferplus_rows[1][1:]
    test_names = {r[1][:-4]: syn.majority_label([int(v) for v in r[2:]]) for r in new if r[0] == "PrivateTest" and r[1]}
    occ = (root / "jianfei_occlusion_list.txt").read_bytes()
    assert occ.endswith(b"\r\n") and occ.count(b"\r\n") == occ.count(b"\n")
    lines = occ.decode().split("\r\n")[:-1]
    assert len(lines) == ferplus["counts"]["occluded_test"] >= 10
    kinds = set()
    for line in lines:
        m = re.fullmatch(r"([0-7])_(fer\d{7})\.png 8 ([0-3])", line)
        assert m, line
        assert test_names[m.group(2)] == int(m.group(1))
        kinds.add(int(m.group(3)))
    assert kinds == {0, 1, 2, 3}
    pose = {}
    for name in ("pose_30_ferplus_list.txt", "pose_45_ferplus_list.txt"):
        data = (root / name).read_bytes()
        assert b"\r" not in data and data.endswith(b"\n")
        pose[name] = data.decode().splitlines()
        for line in pose[name]:
            m = re.fullmatch(r"([0-7])/(fer\d{7})\.jpg", line)
            assert m, line
            assert test_names[m.group(2)] == int(m.group(1))
    assert set(pose["pose_45_ferplus_list.txt"]) < set(pose["pose_30_ferplus_list.txt"])
    assert len(pose["pose_45_ferplus_list.txt"]) >= 3
    # the meta file agrees with the lists
    with open(root / "ferplus_meta.csv", newline="") as fh:
        meta = {r["name"][:-4]: r for r in csv.DictReader(fh) if r["name"]}
    for line in pose["pose_30_ferplus_list.txt"]:
        assert abs(float(meta[line[2:-4]]["yaw"])) > 30


@pytest.mark.slow
def test_ferplus_deterministic(tmp_path: Path) -> None:
    kwargs = {"splits": syn.Splits(train=30, valid=6, test=24), "layout": "both"}
    syn.generate_ferplus(tmp_path / "a", seed=11, **kwargs)
    syn.generate_ferplus(tmp_path / "b", seed=11, **kwargs)
    syn.generate_ferplus(tmp_path / "c", seed=12, **kwargs)
    a, b, c = (_tree_digest(tmp_path / k) for k in "abc")
    assert a == b
    assert a["fer2013.csv"] != c["fer2013.csv"]


def test_split_streams_are_independent(tmp_path: Path) -> None:
    syn.generate_ferplus(tmp_path / "a", syn.Splits(train=12, valid=4, test=10), seed=2)
    syn.generate_ferplus(tmp_path / "b", syn.Splits(train=20, valid=4, test=10), seed=2)

    def pixels(root: Path, usage: str) -> list[str]:
        with open(root / "fer2013.csv", newline="") as fh:
            return [r["pixels"] for r in csv.DictReader(fh) if r["Usage"] == usage]

    assert pixels(tmp_path / "a", "PrivateTest") == pixels(tmp_path / "b", "PrivateTest")


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="layout"):
        syn.generate_ferplus(tmp_path, syn.Splits(train=1, valid=1, test=1), layout="zip")
    with pytest.raises(ValueError, match="probability"):
        syn.generate_ferplus(tmp_path, syn.Splits(train=1, valid=1, test=1), occlusion=1.5)
    with pytest.raises(ValueError, match="unknown split"):
        syn.generate_ferplus(tmp_path, syn.Splits(train=1, valid=1, test=1), pose={"val": 0.2})
    with pytest.raises(ValueError, match="occlusion"):
        syn.render_faces([0], occlusion=["scarf"])
    with pytest.raises(ValueError, match="labels"):
        syn.render_faces([8])


# ------------------------------------------------------------------------------------------------ AffectNet


def test_affectnet_layout1(affectnet: dict) -> None:
    root = Path(affectnet["root"])
    codes = []
    for name in ("training.csv", "validation.csv"):
        with open(root / "Manually_Annotated_file_lists" / name, newline="") as fh:
            rows = list(csv.reader(fh))
        assert ",".join(rows[0]) == AFFECTNET_HEADER
        for row in rows[1:]:
            assert len(row) == 9
            sub, file = row[0].split("/")
            assert sub.isdigit() and re.fullmatch(r"[0-9a-f]{56}\.jpg", file)
            x, y, w, h = (int(v) for v in row[1:5])
            lm = [float(v) for v in row[5].split(";")]
            assert len(lm) == 136
            code = int(row[6])
            codes.append(code)
            valence, arousal = float(row[7]), float(row[8])
            if code in (9, 10):
                assert valence == arousal == -2
            else:
                assert -1 <= valence <= 1 and -1 <= arousal <= 1
            with Image.open(root / "Manually_Annotated_Images" / row[0]) as im:
                assert im.format == "JPEG" and im.mode == "RGB" and im.size == (96, 96)
                assert x >= 0 and y >= 0 and x + w <= im.width and y + h <= im.height and w == h > 20
            xs, ys = lm[0::2], lm[1::2]
            margin = 0.08 * w
            inside = sum(
                x - margin <= a <= x + w + margin and y - margin <= b <= y + h + margin
                for a, b in zip(xs, ys, strict=True)
            )
            assert inside == 68
            # the points spread over the box like a face: eyes above the nose tip above the mouth
            eye_y = sum(ys[36:48]) / 12
            assert eye_y < ys[30] < sum(ys[48:68]) / 20
            assert xs[36] < xs[39] < xs[42] < xs[45] and xs[48] < xs[54]
    assert set(range(8)) <= set(codes) and {8, 9, 10} <= set(codes)


@pytest.mark.parametrize(
    ("part", "points", "change"),
    [
        ("eyes", slice(36, 48), {"eye_open": 0.05, "eye_smile": 0.0}),
        ("mouth", slice(48, 68), {"mouth_open": 0.15, "teeth": 0.0, "lip_raise": 0.0}),
        ("brows", slice(17, 27), {"brow_th": 0.001}),
    ],
)
def test_landmarks_sit_on_the_drawn_parts(part: str, points: slice, change: dict) -> None:
    # Redraw the same faces with one part changed: the pixels that change lie around that part's landmarks.
    g = torch.Generator().manual_seed(4)
    n = 24
    params = syn.sample_faces(
        torch.arange(n) % 8, generator=g, yaw=torch.linspace(-50, 50, n), face_scale=(0.6, 0.8), max_shift=0.15
    )
    changed = dict(params)
    for name, value in change.items():
        changed[name] = torch.full_like(params[name], value)
    a, lm = syn.render_batch(params, 96, channels=3, generator=torch.Generator().manual_seed(0))
    b, lm_b = syn.render_batch(changed, 96, channels=3, generator=torch.Generator().manual_seed(0))
    diff = (a.float() - b.float()).abs().sum(1)  # (n, 96, 96)
    diff = diff * (diff > 9)  # the contrast step follows the image mean: tiny changes everywhere
    ys, xs = torch.meshgrid(torch.arange(96) + 0.5, torch.arange(96) + 0.5, indexing="ij")
    for i in range(n):
        both = torch.cat([lm[i, points], lm_b[i, points]])
        lo, hi = both.min(0).values, both.max(0).values
        margin = 3.0 + 0.15 * (hi - lo)
        box = (xs >= lo[0] - margin[0]) & (xs <= hi[0] + margin[0]) & (ys >= lo[1] - margin[1])
        box &= ys <= hi[1] + margin[1]
        share = diff[i][box].sum() / diff[i].sum()
        assert share > 0.85, (part, i, float(share))


def test_affectnet_lists(affectnet: dict) -> None:
    root = Path(affectnet["root"])
    with open(root / "Manually_Annotated_file_lists" / "validation.csv", newline="") as fh:
        val = {r["subDirectory_filePath"].split("/")[1][:-4]: int(r["expression"]) for r in csv.DictReader(fh)}
    patterns = {
        "occlusion_affectnet_list.txt": r"val/([0-7])/([0-9a-f]{56})/",
        "pose_30_affectnet_list.txt": r"([0-7])/([0-9a-f]{56})\.jpg",
        "pose_45_affectnet_list.txt": r"([0-7])/([0-9a-f]{56})/8\.jpg",
    }
    for name, pattern in patterns.items():
        lines = (root / name).read_text().splitlines()
        assert lines, name
        for line in lines:
            m = re.fullmatch(pattern, line)
            assert m, line
            assert val[m.group(2)] == int(m.group(1))


@pytest.mark.slow
def test_affectnet_deterministic(tmp_path: Path) -> None:
    for k in "ab":
        syn.generate_affectnet(tmp_path / k, syn.Splits(train=12, test=12), seed=1, image_size=64)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")


def test_affectnet_layout2(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    result = syn.generate_affectnet(tmp_path, syn.Splits(train=10, test=16), seed=0, layout="npy", image_size=64)
    for split in ("train_set", "val_set"):
        base = tmp_path / split
        images = sorted((base / "images").glob("*.jpg"))
        assert len(images) == (10 if split == "train_set" else 16)
        for image in images[:4]:
            ann = base / "annotations"
            assert 0 <= int(np.load(ann / f"{image.stem}_exp.npy")) <= 7
            assert np.load(ann / f"{image.stem}_lnd.npy").shape == (68, 2)
            assert -1 <= float(np.load(ann / f"{image.stem}_val.npy")) <= 1
            assert -1 <= float(np.load(ann / f"{image.stem}_aro.npy")) <= 1
            with Image.open(image) as im:
                assert im.size == (64, 64)
    assert result["counts"]["extra_codes"] == 0


# ------------------------------------------------------------------------------------------------ renderer, CLI


def test_render_faces() -> None:
    imgs = syn.render_faces(list(range(8)), generator=torch.Generator().manual_seed(0))
    assert imgs.shape == (8, 1, 48, 48) and imgs.dtype == torch.uint8
    again = syn.render_faces(list(range(8)), generator=torch.Generator().manual_seed(0))
    assert torch.equal(imgs, again)
    rgb = syn.render_faces([0, 1], size=64, channels=3)
    assert rgb.shape == (2, 3, 64, 64)


def test_occluders_hide_their_region() -> None:
    labels = [1] * 16
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731 - same faces each time
    clean = syn.render_faces(labels, generator=g()).float()
    diffs = {}
    for occ in ("upper", "bottom", "left", "right", "glasses", "mask"):
        diff = (syn.render_faces(labels, occlusion=[occ] * 16, generator=g()).float() - clean).abs().mean(0)[0]
        diffs[occ] = {
            "top": diff[:16].mean(),
            "bottom": diff[32:].mean(),
            "left": diff[:, :20].mean(),
            "right": diff[:, 28:].mean(),
        }
    assert diffs["upper"]["top"] > 2 * diffs["upper"]["bottom"]
    assert diffs["bottom"]["bottom"] > 2 * diffs["bottom"]["top"]
    assert diffs["mask"]["bottom"] > 2 * diffs["mask"]["top"]
    assert diffs["left"]["left"] > 2 * diffs["left"]["right"]
    assert diffs["right"]["right"] > 2 * diffs["right"]["left"]
    assert diffs["glasses"]["top"] > diffs["glasses"]["bottom"]


def test_expressions_differ_in_local_parts() -> None:
    # Same identities, two expressions: happiness and surprise differ in the mouth AND in the eye/brow band.
    g = torch.Generator().manual_seed(1)
    p1 = syn.sample_faces([1] * 32, generator=g, yaw=[0.0] * 32)
    p2 = {k: v.clone() for k, v in p1.items()}
    table = syn.faces._EXPR_TABLE
    for i, name in enumerate(syn.faces._EXPR):
        p2[name] = torch.full_like(p1[name], float(table[2, i]))
    a = syn.render_batch(p1, generator=torch.Generator().manual_seed(0))[0].float()
    b = syn.render_batch(p2, generator=torch.Generator().manual_seed(0))[0].float()
    diff = (a - b).abs().mean(0)[0]
    assert diff[12:24].mean() > 3 and diff[30:44].mean() > 3


@pytest.mark.slow
def test_cli_module_and_script(tmp_path: Path) -> None:
    assert syn.main(["ferplus", "--out", str(tmp_path / "m"), "--train", "8", "--valid", "2", "--test", "6"]) == 0
    assert (tmp_path / "m" / "fer2013new.csv").is_file()
    sfew = ["sfew", "--out", str(tmp_path / "f"), "--train", "7", "--test", "7", "--variant", "aligned"]
    assert syn.main(sfew) == 0
    assert len(list((tmp_path / "f" / "Val_Aligned_Faces_new").rglob("*.png"))) == 7
    script = Path(syn.__file__).resolve().parent  # the package folder, run by path (its __main__.py)
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            "affectnet",
            "--out",
            str(tmp_path / "s"),
            "--train",
            "4",
            "--test",
            "4",
            "--size",
            "48",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s" / "Manually_Annotated_file_lists" / "training.csv").is_file()


def test_contact_sheet(tmp_path: Path) -> None:
    path = syn.contact_sheet(tmp_path / "sheet.png", per_class=2, zoom=1)
    with Image.open(path) as im:
        assert im.size == (8 * 48, (8 + 6 + 2) * 48)


# ---------------------------------------------------------------------------------------- occlusion ground truth


def _meta_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_ferplus_occluders_cover_every_face(ferplus: dict) -> None:
    root = Path(ferplus["root"])
    assert ferplus["files"]["occluders"] == str(root / syn.OCCLUDERS_FILE)
    meta = _meta_rows(root / "ferplus_meta.csv")
    with open(root / "fer2013.csv", newline="") as fh:
        pixels = [torch.tensor([int(v) for v in r["pixels"].split()]).reshape(48, 48) for r in csv.DictReader(fh)]
    seen = 0
    for split, n in SIZES.items():
        rows = [r for r in meta if r["split"] == split]
        masks = syn.load_occluder_masks(root, split)
        assert list(masks) == [f"fer{int(r['row']):07d}" for r in rows] and len(masks) == n
        for r in rows:
            key = f"fer{int(r['row']):07d}"
            if r["name"]:
                assert key == r["name"][:-4]  # the reader's key and the subset lists' key
            mask = masks[key]
            assert mask.shape == (48, 48) and mask.dtype == torch.bool
            assert bool(mask.any()) == (r["occlusion"] != "none"), (key, r["occlusion"])
            if r["occlusion"] != "none":
                seen += 1
                rows_hit = mask.any(1).nonzero()[:, 0].float().mean()
                cols_hit = mask.any(0).nonzero()[:, 0].float().mean()
                if r["occlusion"] == "upper":
                    assert rows_hit < 20, key
                if r["occlusion"] in ("bottom", "mask"):
                    assert rows_hit > 28, key
                if r["occlusion"] == "left":
                    assert cols_hit < 20, key
                if r["occlusion"] == "right":
                    assert cols_hit > 28, key
                if r["occlusion"] == "glasses":  # dark lenses: the masked pixels are the darkest of the face
                    image = pixels[int(r["row"])].float()
                    assert image[mask].mean() < image[~mask].mean() - 20, key
    assert seen == sum(r["occlusion"] != "none" for r in meta) >= 20


def test_occluders_file_is_plain_numpy(ferplus: dict) -> None:
    np = pytest.importorskip("numpy")
    root = Path(ferplus["root"])
    with np.load(root / syn.OCCLUDERS_FILE, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(f"{s}_{k}" for s in ("train", "valid", "test") for k in ("keys", "alpha"))
        alpha, keys = data["test_alpha"], data["test_keys"]
    found = syn.load_occluders(root, "test")
    assert alpha.dtype == np.uint8 and alpha.shape == (SIZES["test"], 48, 48)
    assert found.keys == [str(k) for k in keys]
    assert torch.equal((found.alpha * 255).round().to(torch.uint8), torch.from_numpy(alpha))


def test_affectnet_occluders(affectnet: dict) -> None:
    root = Path(affectnet["root"])
    meta = _meta_rows(root / "affectnet_meta.csv")
    for split in ("train", "val"):
        found = syn.load_occluders(root, split)
        rows = [r for r in meta if r["split"] == split]
        assert found.keys == [r["id"] for r in rows]
        assert found.alpha.shape == (len(rows), 96, 96)
        assert [bool(a.any()) for a in found.alpha] == [r["occlusion"] != "none" for r in rows]
    with open(root / "Manually_Annotated_file_lists" / "validation.csv", newline="") as fh:
        stems = [Path(r["subDirectory_filePath"]).stem for r in csv.DictReader(fh)]
    assert syn.load_occluders(root, "val").keys == stems


def test_occluder_alpha_is_what_was_drawn() -> None:
    # Draw the same faces with and without their occluders, the camera an identity (no noise, contrast 1,
    # brightness 0): every pixel that changes is one the occluder covers, by at most its opacity.
    n, size = 24, 64
    kinds = [syn.OCCLUSIONS[1 + i % 6] for i in range(n)]
    params = syn.sample_faces(torch.arange(n) % 8, generator=torch.Generator().manual_seed(5), occlusion=kinds)
    params["noise"] = torch.zeros(n)
    params["contrast"] = torch.ones(n)
    params["brightness"] = torch.zeros(n)
    bare = dict(params, occlusion=torch.zeros(n, dtype=torch.long))
    hidden = syn.render(params, size, channels=3, generator=torch.Generator().manual_seed(0))
    clean = syn.render(bare, size, channels=3, generator=torch.Generator().manual_seed(0))
    assert not clean.occluders.any()
    assert torch.equal(hidden.landmarks, clean.landmarks)
    change = (hidden.images.float() - clean.images.float()).abs().amax(1)  # (n, S, S) in grey levels
    alpha = hidden.occluders
    assert bool((change[alpha == 0] <= 1).all())  # rounding only where the occluder is absent
    assert bool((change <= 255 * alpha + 1).all())
    for i in range(n):
        assert alpha[i].max() == 1.0, kinds[i]
        assert change[i][alpha[i] > 0.5].mean() > 10, kinds[i]  # the occluder shows where the mask says
    # Where the occluder hides the face completely, the pixels do not depend on the face behind it.
    other = dict(params)
    for name in ("mouth_curve", "mouth_open", "teeth", "brow_raise", "eye_open", "glabella"):
        other[name] = params[name].flip(0)
    moved = syn.render(other, size, channels=3, generator=torch.Generator().manual_seed(0))
    full = (alpha == 1) & (moved.occluders == 1)
    assert full.sum() > n * 40
    diff = (hidden.images.float() - moved.images.float()).abs().amax(1)
    assert bool((diff[full] <= 1).all())
    assert diff[(alpha == 0) & (moved.occluders == 0)].max() > 30  # the faces behind do differ


def _coverage_loop(mask: torch.Tensor, box: list[float]) -> float:
    x1, y1, x2, y2 = box
    area = (x2 - x1) * (y2 - y1)
    if area <= 0:
        return 0.0
    covered = 0.0
    for i in range(mask.shape[0]):
        for j in range(mask.shape[1]):
            w = max(0.0, min(x2, j + 1.0) - max(x1, float(j)))
            h = max(0.0, min(y2, i + 1.0) - max(y1, float(i)))
            covered += float(mask[i, j]) * w * h
    return covered / area


def test_box_coverage_matches_a_pixel_loop() -> None:
    g = torch.Generator().manual_seed(0)
    h, w = 9, 12
    masks = [torch.rand(h, w, generator=g) > 0.6, torch.rand(h, w, generator=g, dtype=torch.float64)]
    xy = torch.rand(20, 2, generator=g) * torch.tensor([w + 6.0, h + 6.0]) - 3.0  # some outside the image
    wh = torch.rand(20, 2, generator=g) * 7.0
    boxes = torch.cat([xy, xy + wh], 1)
    boxes = torch.cat(
        [
            boxes,
            torch.tensor([[2.0, 3.0, 2.0, 7.0], [0.0, 0.0, w, h], [-5.0, -5.0, -1.0, -1.0], [1.25, 2.5, 3.75, 2.75]]),
        ]
    )
    for mask in masks:
        got = syn.box_coverage(mask, boxes)
        expected = torch.tensor([_coverage_loop(mask, b) for b in boxes.tolist()], dtype=torch.float64)
        assert got.dtype == torch.float64 and got.shape == (len(boxes),)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        assert got[20] == 0.0 and got[22] == 0.0  # zero area, wholly outside
        torch.testing.assert_close(got[21], mask.double().mean())
    # batched, and boxes given in a larger frame of the same view (the network's input)
    both = torch.stack([masks[0].double(), masks[1]])
    batched = syn.box_coverage(both, torch.stack([boxes, boxes.flip(0)]))
    torch.testing.assert_close(batched[0], syn.box_coverage(masks[0], boxes))
    torch.testing.assert_close(batched[1], syn.box_coverage(masks[1], boxes.flip(0)))
    scale = torch.tensor([224 / w, 224 / h, 224 / w, 224 / h])
    scaled = syn.box_coverage(masks[1], boxes * scale, image_size=(224, 224))
    torch.testing.assert_close(scaled, syn.box_coverage(masks[1], boxes))


def test_box_coverage_and_loader_reject_bad_input(tmp_path: Path) -> None:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"boxes of shape \(K, 4\)"):
        syn.box_coverage(mask, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="mask of shape"):
        syn.box_coverage(torch.zeros(4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="x2 >= x1"):
        syn.box_coverage(mask, torch.tensor([[3.0, 0.0, 1.0, 2.0]]))
    with pytest.raises(ValueError, match="finite"):
        syn.box_coverage(mask, torch.tensor([[0.0, 0.0, float("nan"), 2.0]]))
    with pytest.raises(TypeError, match="floating-point boxes"):
        syn.box_coverage(mask, torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(FileNotFoundError, match=r"occluders\.npz"):
        syn.load_occluders(tmp_path, "test")
    syn.write_occluders(tmp_path / syn.OCCLUDERS_FILE, {"test": (["a"], torch.zeros(1, 2, 2))})
    with pytest.raises(ValueError, match=r"split 'val'.*test"):
        syn.load_occluders(tmp_path, "val")
    with pytest.raises(ValueError, match="threshold"):
        syn.load_occluder_masks(tmp_path, "test", threshold=1.0)


def test_splits_name_the_bad_size() -> None:
    with pytest.raises(ValueError, match=r"Splits\.valid must be >= 0, got -1"):
        syn.Splits(train=3, valid=-1)
    with pytest.raises(TypeError, match=r"Splits\.test expected an int, got float"):
        syn.Splits(test=2.0)  # type: ignore[arg-type]
    assert syn.Splits(train=3, test=2).sizes(("train", "test"), "w") == {"train": 3, "test": 2}


@pytest.mark.parametrize(
    ("writer", "splits", "missing"),
    [
        (syn.generate_affectnet, syn.Splits(train=4, valid=2, test=4), "valid=2"),
        (syn.generate_rafdb, syn.Splits(train=7, valid=7, test=7), "valid=7"),
        (syn.generate_sfew, syn.Splits(train=7, valid=1, test=7), "valid=1"),
    ],
)
def test_a_writer_rejects_a_split_its_dataset_lacks(writer, splits, missing, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=rf"writes the splits train, test; got sizes for valid \({missing}\)"):
        writer(tmp_path, splits)
    assert not any(tmp_path.iterdir())  # nothing written


def test_cli_bad_values_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert syn.main(["ferplus", "--out", str(tmp_path), "--train", "-3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "python -m examples.common.synthetic ferplus: error: Splits.train must be >= 0, got -3"
    with pytest.raises(SystemExit) as exit_:
        syn.main(["affectnet", "--out", str(tmp_path), "--layout", "2"])  # the layouts are named now
    assert exit_.value.code == 2
