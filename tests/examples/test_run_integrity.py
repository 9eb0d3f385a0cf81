"""Runs that never lie, second round (issue 22): content fingerprints, checkpoints that belong to their run,
predict.py reading faces as training does, restarts of runs that died early, checkpoint checks, line numbers.

Every refusal is checked to be one line with exit status 2, to leave ``config.json`` and ``metrics.jsonl``
byte for byte as they were, and (where it gives advice) to be followed by a run that works.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from examples.common.engine.checkpoints import (
    CheckpointError,
    atomic_save,
    check_state_dict,
    content_hash,
    load_checkpoint_file,
    non_finite_tensors,
)
from examples.common.synthetic import Splits, generate_ferplus
from examples.ferplus.train import main
from PIL import Image

from ._runs import run_argv as argv

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ferplus") / "data"
    generate_ferplus(out, Splits(train=40, valid=12, test=12), seed=3)
    return out


def refused(capsys, args: list[str], pattern: str) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def snapshot(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in ("config.json", "metrics.jsonl") if (out / name).exists()}


def weights_hash(out: Path, name: str = "last.pt") -> str:
    return content_hash(load_checkpoint_file(out / "checkpoints" / name)["model"])


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> dict:
    """An uninterrupted two-epoch run: what every resumed run below must reproduce exactly."""
    out = tmp_path_factory.mktemp("straight") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests (one_thread), so the float sums match bit for bit
    try:
        summary = main(argv(data, out, epochs=2))
    finally:
        torch.set_num_threads(threads)
    return {"summary": summary, "hash": weights_hash(out), "out": out}


# ---------------------------------------------------------------------------------------------------------------
# 1. The fingerprint covers content


def _rewrite_csv(src: Path, dst: Path, column: str, change) -> None:
    lines = src.read_text().splitlines()
    header = lines[0].split(",")
    at = header.index(column)
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.split(",")
        fields[at] = change(fields[at])
        out.append(",".join(fields))
    dst.write_text("\n".join(out) + "\n")


@pytest.mark.slow  # trains (a few seconds)
def test_changed_pixels_are_refused_naming_them(data, tmp_path, capsys):
    out = tmp_path / "run"
    main(argv(data, out))
    before = snapshot(out)
    other = tmp_path / "data"
    shutil.copytree(data, other)
    _rewrite_csv(
        data / "fer2013.csv",
        other / "fer2013.csv",
        "pixels",
        lambda text: " ".join(str(255 - int(v)) for v in text.split()),
    )  # keys, votes: all the same
    line = refused(capsys, argv(other, out, "--resume", epochs=2), r"other image content \(pixels")
    assert "other labels" not in line and "other images (their names)" not in line
    assert snapshot(out) == before


@pytest.mark.slow  # trains (a few seconds)
def test_changed_vote_distributions_are_refused_with_crossentropy(data, tmp_path, capsys):
    out = tmp_path / "run"
    main(argv(data, out, "--label-mode", "crossentropy"))
    before = snapshot(out)
    other = tmp_path / "data"
    shutil.copytree(data, other)
    lines = (data / "fer2013new.csv").read_text().splitlines()
    header = lines[0].split(",")
    votes = [
        header.index(c) for c in ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
    ]
    changed = [lines[0]]
    for line in lines[1:]:  # move one vote between the two smallest counts of 2+ (no class gains or loses the top)
        fields = line.split(",")
        counts = sorted((int(fields[i]), i) for i in votes if int(fields[i]) >= 2)
        if len(counts) >= 3:
            (a, i), (b, j) = counts[0], counts[1]
            fields[i], fields[j] = str(a + 1), str(b - 1) if b - 1 != 1 else str(b)
        changed.append(",".join(fields))
    (other / "fer2013new.csv").write_text("\n".join(changed) + "\n")
    refused(
        capsys,
        argv(other, out, "--label-mode", "crossentropy", "--resume", epochs=2),
        r"train split: .*(other labels|images vs now)",
    )
    assert snapshot(out) == before


# ---------------------------------------------------------------------------------------------------------------
# 2. Checkpoints belong to their run


@pytest.mark.slow  # trains (a few seconds)
def test_another_runs_best_pt_is_refused_and_the_advice_works(data, straight, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    main(argv(data, a))
    main(argv(data, b, "--lr", "0.01", epochs=2))
    shutil.copy(b / "checkpoints" / "best.pt", a / "checkpoints" / "best.pt")  # a later epoch, another lr
    before = snapshot(a)
    line = refused(capsys, argv(data, a, "--resume", epochs=2), r"best\.pt belongs to another run than .*config\.json")
    assert "move it out of" in line
    assert snapshot(a) == before  # neither config.json nor metrics.jsonl rewritten
    (a / "checkpoints" / "best.pt").rename(tmp_path / "b-best.pt")  # the advice
    summary = main(argv(data, a, "--resume", epochs=2))
    assert "written again from" in capsys.readouterr().err  # best.pt was the last epoch's: restored from last.pt
    assert weights_hash(a) == straight["hash"]  # the run continued as if never touched
    assert summary["test"] == straight["summary"]["test"]
    assert summary["selected_epoch"] == straight["summary"]["selected_epoch"]


@pytest.mark.slow  # trains (a few seconds)
def test_another_runs_last_pt_is_refused(data, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    main(argv(data, a))
    main(argv(data, b, "--seed", "1"))
    shutil.copy(b / "checkpoints" / "last.pt", a / "checkpoints" / "last.pt")
    before = snapshot(a)
    refused(capsys, argv(data, a, "--resume", epochs=2), r"last\.pt belongs to another run")
    assert snapshot(a) == before


@pytest.mark.slow  # trains (a few seconds)
def test_a_best_pt_of_another_attempt_does_not_fit_last_pt(data, tmp_path, capsys):
    a = tmp_path / "a"
    main(argv(data, a))
    twin = tmp_path / "twin"
    shutil.copytree(a, twin)  # the same run id, continued twice
    main(argv(data, a, "--resume", epochs=2))
    main(argv(data, twin, "--resume", epochs=3))
    last = load_checkpoint_file(twin / "checkpoints" / "last.pt")
    atomic_save({k: v for k, v in last.items()}, a / "checkpoints" / "best.pt")  # epoch 3 beside epoch 2
    refused(capsys, argv(data, a, "--resume", epochs=3), r"best\.pt \(epoch 3\) does not fit .*last\.pt \(epoch 2\)")


@pytest.mark.slow  # trains (a few seconds)
def test_a_damaged_best_pt_does_not_block_a_resume(data, straight, tmp_path, capsys):
    out = tmp_path / "run"
    main(argv(data, out))
    (out / "checkpoints" / "best.pt").write_bytes(b"damaged")
    summary = main(argv(data, out, "--resume", epochs=2))
    assert "best.pt" in capsys.readouterr().err
    assert weights_hash(out) == straight["hash"] and summary["test"] == straight["summary"]["test"]


@pytest.mark.slow  # trains (a few seconds)
def test_epochs_below_a_finished_run_are_refused(straight, data, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(straight["out"], out)
    before = snapshot(out)
    refused(
        capsys,
        argv(data, out, "--resume", epochs=1),
        r"has trained 2 epochs; --epochs 1 is below that: give "
        r"--epochs 2 or more",
    )
    assert snapshot(out) == before


# ---------------------------------------------------------------------------------------------------------------
# 6. A run that died before its first checkpoint


@pytest.mark.slow  # trains (a few seconds)
def test_a_folder_with_only_config_json_restarts_on_resume(data, straight, tmp_path, capsys):
    out = tmp_path / "run"
    main(argv(data, out, epochs=2))
    run_id = json.loads((out / "config.json").read_text())["run_id"]
    shutil.rmtree(out / "checkpoints")
    for name in ("metrics.jsonl", "summary.json", "test_predictions.pt", "confusion_matrix.png", "training_curves.png"):
        (out / name).unlink(missing_ok=True)
    refused(capsys, argv(data, out, epochs=2), r"already holds a run \(config\.json\); give --resume")
    summary = main(argv(data, out, "--resume", epochs=2))  # the advice
    assert json.loads((out / "config.json").read_text())["run_id"] == run_id
    assert weights_hash(out) == straight["hash"] and summary["test"] == straight["summary"]["test"]
    with pytest.raises(SystemExit):  # other options: refused like any resume on another configuration
        main(argv(tmp_path / "nowhere", tmp_path / "empty", "--resume"))


# ---------------------------------------------------------------------------------------------------------------
# 7. Checkpoints that should not load


def test_checkpoint_checks(tmp_path):
    good = {
        "format": "region-attention-example/1",
        "model": {"w": torch.ones(2)},
        "config": {},
        "class_names": [],
        "epoch": 0,
        "best": {},
        "history": [{}],
    }
    path = tmp_path / "c.pt"
    atomic_save(good, path)
    assert load_checkpoint_file(path)["model"]["w"].sum() == 2
    atomic_save(good, path, checksum=False)
    with pytest.raises(CheckpointError, match=r"c\.pt has no checksum"):
        load_checkpoint_file(path)
    for bad in (
        torch.tensor([complex(0, float("nan"))]),
        torch.tensor([float("inf")], dtype=torch.bfloat16),
        torch.tensor([complex(float("inf"), 0)], dtype=torch.complex128),
    ):
        atomic_save({**good, "model": {"w": bad}}, path)
        with pytest.raises(CheckpointError, match=r"NaN or infinite weights in 1 tensor\(s\): w"):
            load_checkpoint_file(path)
    assert non_finite_tensors({"a": [torch.ones(1), {"b": torch.tensor([float("nan")])}]}) == ["a[1].b"]
    assert non_finite_tensors({"i": torch.ones(2, dtype=torch.int64)}) == []
    with pytest.raises(CheckpointError, match=r"both with and without the 'module\.' prefix.*'module\.w' and 'w'"):
        check_state_dict({"w": torch.ones(1), "module.w": torch.ones(1)}, "x.pt")
    check_state_dict({"module.w": torch.ones(1)}, "x.pt")  # a prefix alone is not ambiguous


@pytest.mark.slow  # trains (a few seconds)
def test_a_full_disk_names_the_file(data, tmp_path, capsys, monkeypatch):
    from examples.common.engine import checkpoints

    def full(obj, fh):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 512 vs 0")

    monkeypatch.setattr(checkpoints.torch, "save", full)
    out = tmp_path / "run"
    refused(
        capsys,
        argv(data, out),
        r"cannot write .*best\.pt: \[enforce fail at inline_container\.cc:672\] \. "
        r"unexpected pos 512 vs 0 \(is its disk full",
    )


# ---------------------------------------------------------------------------------------------------------------
# 3. predict.py reads faces as training did


def _face() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(40, 40, generator=g) * 255).round().to(torch.uint8)


def _formats(tmp_path: Path) -> dict[str, Path]:
    """The same grey face as 8-bit, 16-bit, palette, RGBA and float TIFF files."""
    import numpy as np

    face = _face().numpy()
    paths = {}
    paths["8-bit"] = tmp_path / "face8.png"
    Image.fromarray(face, "L").save(paths["8-bit"])
    paths["16-bit"] = tmp_path / "face16.png"
    Image.fromarray(face.astype(np.uint16) * 257).save(paths["16-bit"])  # I;16: 0..65535
    assert Image.open(paths["16-bit"]).mode.startswith("I")
    paths["palette"] = tmp_path / "facep.png"
    palette = Image.fromarray(face, "L").convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    palette.putpalette([v for i in range(256) for v in (i, i, i)])
    palette = Image.fromarray(face, "P")
    palette.putpalette([v for i in range(256) for v in (i, i, i)])
    palette.save(paths["palette"])
    paths["RGBA"] = tmp_path / "facea.png"
    Image.fromarray(np.stack([face] * 3 + [np.full_like(face, 255)], -1), "RGBA").save(paths["RGBA"])
    paths["float TIFF"] = tmp_path / "facef.tif"
    Image.fromarray(face.astype(np.float32) / 255, "F").save(paths["float TIFF"])
    return paths


@pytest.mark.parametrize("channels", ["L", "RGB"])
def test_predict_reads_every_format_as_training_does(tmp_path, channels):
    from examples.common.folder_data import ImageListDataset, ImageRecord
    from examples.ferplus.data import FERPlusDataset, FERPlusSplit
    from examples.predict import load_image

    paths = _formats(tmp_path)
    record = {"image_channels": channels, "fit": None}
    # the training readers: FERPlus's grey folder reader, the RGB image-list reader of RAF-DB/SFEW
    if channels == "L":
        split = FERPlusSplit("test", "majority", "folder", [], {})
        split.records = [type("R", (), {"image_path": paths["8-bit"], "label": 0})()]  # one record
        reference = FERPlusDataset.__new__(FERPlusDataset)
        reference.split, reference.image_size, reference.transform = split, 24, None
        trained = torch.nn.functional.interpolate  # noqa: F841 (documentation: resized with PIL, not torch)
        grey = reference._grey(0).resize((24, 24), Image.Resampling.BILINEAR)
        expected = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8).reshape(1, 24, 24).expand(3, 24, 24)
    else:
        expected = ImageListDataset([ImageRecord("f", paths["8-bit"], 0)], 24)[0][0]
    for name, path in paths.items():
        image, size = load_image(path, 24, record)
        assert size == (40, 40)
        torch.testing.assert_close(image, expected.float() / 255, rtol=0, atol=0, msg=name)
        if channels == "L":
            assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_a_grey_trained_checkpoint_gets_grey_faces(tmp_path):
    from examples.predict import load_image

    rgb = torch.zeros(3, 8, 8, dtype=torch.uint8)
    rgb[0], rgb[1], rgb[2] = 200, 50, 10
    path = tmp_path / "colour.png"
    Image.frombytes("RGB", (8, 8), rgb.permute(1, 2, 0).contiguous().numpy().tobytes()).save(path)
    grey, _ = load_image(path, 8, {"image_channels": "L", "fit": None})
    luma = round(200 * 299 / 1000 + 50 * 587 / 1000 + 10 * 114 / 1000)  # ITU-R 601, as PIL's "L"
    assert torch.equal(grey, torch.full((3, 8, 8), luma / 255))
    colour, _ = load_image(path, 8, {"image_channels": "RGB", "fit": None})
    assert torch.equal(colour[:, 0, 0], torch.tensor([200, 50, 10]) / 255)


def test_predict_gives_one_answer_for_every_format_of_a_face(tmp_path):
    from examples.common.engine import CHECKPOINT_FORMAT, resolve_config
    from examples.common.models import build_model
    from examples.ferplus.train import build_parser
    from examples.predict import main as predict

    cfg = resolve_config(
        build_parser().parse_args(["--data-dir", "x", "--output-dir", "y", "--backbone", "small", "--image-size", "24"])
    )
    torch.manual_seed(0)
    model = build_model(cfg, 8)
    ckpt = tmp_path / "grey.pt"
    atomic_save(
        {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "epoch": 0,
            "history": [{}],
            "config": {**cfg.to_dict(), "image_channels": "L"},
            "class_names": list("abcdefgh"),
            "best": {"epoch": None, "accuracy": -1.0},
        },
        ckpt,
    )
    results = predict(["--checkpoint", str(ckpt), *map(str, _formats(tmp_path).values())])
    first = results[0]["probabilities"]
    assert all(r["probabilities"] == first for r in results), [r["image"] for r in results]


# ---------------------------------------------------------------------------------------------------------------
# 8. Line numbers, AffectNet's codes


def test_a_non_utf8_byte_on_line_8_is_reported_on_line_8(tmp_path):
    from examples.affectnet.data import read_affectnet_csv
    from examples.common.folder_data import text_lines
    from examples.common.subsets import read_text_lines
    from examples.ferplus.data import VOTE_COLUMNS, read_ferplus_csv
    from examples.rafdb.data import read_kaggle_csv

    # a long line 2: a decoder reading blocks reports the line where its block began, not line 8
    formats = {
        "ferplus": (
            f"Usage,Image name,{','.join(VOTE_COLUMNS)}",
            lambda i: f"Training,fer{i:07d}.png,{' ' * (20000 if i == 0 else 0)}10,0,0,0,0,0,0,0,0,0",
        ),
        "affectnet": (
            "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal",
            lambda i: f"{'x' * (20000 if i == 0 else 1)}{i}.jpg,0,0,1,1,,9,0,0",
        ),
        "kaggle": ("image,label", lambda i: f"train_{i:05d}.jpg,{' ' * (20000 if i == 0 else 0)}1"),
    }
    readers = {
        "ferplus": lambda p: read_ferplus_csv(p, p),
        "affectnet": lambda p: read_affectnet_csv(p, tmp_path),
        "kaggle": read_kaggle_csv,
    }
    for name, (header, row) in formats.items():
        path = tmp_path / f"{name}.csv"
        rows = [header, *(row(i) for i in range(6))]
        path.write_bytes("\n".join(rows).encode() + b"\ncaf\xe9,1\n" + row(7).encode() + b"\n")
        with pytest.raises(ValueError, match=rf"{name}\.csv, line 8: not UTF-8 text \(byte 0xe9 at column 4\)"):
            readers[name](path)
        with pytest.raises(ValueError, match=rf"{name}\.csv, line 8: not UTF-8 text \(byte 0xe9 at column 4\)"):
            read_text_lines(path)
        with pytest.raises(ValueError, match=rf"{name}\.csv, line 8: not UTF-8 text"):
            list(text_lines(path))


@pytest.mark.parametrize("code", ["٣", "３", "1e0", "1.0", "+1", " ", "²"])
def test_affectnet_codes_follow_the_other_readers(code):
    from examples.affectnet.data import _parse_code
    from examples.rafdb.data import _label

    with pytest.raises(ValueError, match="expression"):
        _parse_code(code, "training.csv", 2)
    with pytest.raises(ValueError, match="label"):
        _label(code, "list.txt, line 2")
    assert _parse_code(" 3 ", "training.csv", 2) == 3
