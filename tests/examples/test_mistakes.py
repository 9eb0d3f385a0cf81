"""Every user mistake in every script is one line on stderr (what is wrong, what to do) and exit status 2, never a
traceback (issue 22, item 4): a table of mistakes, found at parse time or while the data, the checkpoints or
the output folder are read, driven through each of the four training scripts and ``examples/predict.py``.

The scripts run in this process (``main(argv)``), on small generated data shared by the module, so the table
stays fast; the mistakes found while reading images let a run start, on the small backbone, one step per epoch.
"""

from __future__ import annotations

import importlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from examples.common.synthetic import Splits, generate_affectnet, generate_ferplus, generate_rafdb, generate_sfew
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPTS = ("ferplus", "affectnet", "rafdb", "sfew")
FAST = [
    "--backbone",
    "small",
    "--image-size",
    "16",
    "--batch-size",
    "8",
    "--workers",
    "0",
    "--device",
    "cpu",
    "--max-steps-per-epoch",
    "1",
    "--epochs",
    "1",
]
GENERATE: dict[str, Callable[[Path], object]] = {
    "ferplus": lambda out: generate_ferplus(out, Splits(train=24, valid=8, test=8), seed=3),
    "affectnet": lambda out: generate_affectnet(out, Splits(train=24, test=16), layout="csv", image_size=48, seed=1),
    "rafdb": lambda out: generate_rafdb(out, Splits(train=14, test=14), seed=0),
    "sfew": lambda out: generate_sfew(out, Splits(train=14, test=14), seed=0, variant="aligned", face_size=32),
}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mistakes")
    found = {}
    for name, generate in GENERATE.items():
        generate(root / name)
        found[name] = root / name
    return found


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bad files the mistakes point at: NaN weights, ambiguous ``module.`` names, a plain file, a bad list."""
    root = tmp_path_factory.mktemp("files")
    from examples.common.models import small_cnn

    state = small_cnn().state_dict()
    nan = {k: v.clone() for k, v in state.items()}
    nan["0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(nan, root / "nan.pth")
    torch.save({**state, "module.0.weight": state["0.weight"]}, root / "dup.pth")
    (root / "plain.txt").write_text("a file, not a folder\n")
    (root / "list.txt").write_text("this is not a subset list line\n")
    return {"nan": root / "nan.pth", "dup": root / "dup.pth", "file": root / "plain.txt", "list": root / "list.txt"}


def call(script: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``script``'s ``main(argv)``; it must exit with status 2 and one line on stderr, which is returned."""
    module = "examples.predict" if script == "predict" else f"examples.{script}.train"
    main = importlib.import_module(module).main
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert info.value.code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


#: (mistake, extra arguments, what the one line must say); ``{file}`` etc. are filled from the fixtures.
PARSE_TIME = [
    ("lr inf", ["--lr", "inf"], r"--lr inf: expected a finite number"),
    ("lr nan", ["--lr", "nan"], r"--lr nan: expected a finite number"),
    ("margin inf", ["--margin", "inf"], r"--margin inf: expected a finite number"),
    ("rb-weight inf", ["--rb-weight", "inf"], r"--rb-weight inf: expected a finite number"),
    ("negative lr", ["--lr", "-0.1"], r"--lr must be > 0"),
    ("milestone -1", ["--milestones", "-1"], r"--milestones must be epochs >= 1"),
    ("milestone past the epochs", ["--milestones", "5"], r"--milestones 5: not within --epochs 1"),
    ("roi-size without features", ["--roi-size", "3"], r"--roi-size applies to the one-pass model only"),
    ("split-at without features", ["--split-at", "layer4"], r"--split-at applies to the one-pass model only"),
    ("one-pass baseline", ["--model", "baseline", "--regions-on", "features"], r"the baseline has no regions"),
    ("image too small", ["--image-size", "4"], r"--image-size 4 is too small for --backbone small; give at least"),
    (
        "roi too large",
        ["--regions-on", "features", "--roi-size", "500"],
        r"--roi-size 500 exceeds the 4 x 4 "
        r"feature map .*give --roi-size <= 4",
    ),
    ("bogus device", ["--device", "bogus"], r"--device 'bogus' is not a device"),
    ("output is a file", ["--output-dir", "{file}"], r"--output-dir .*plain\.txt is a file, not a folder"),
    ("bad subset list", ["--subset", "occlusion={list}"], r"list\.txt, line 1: (unknown subset-list line|expected)"),
    ("nothing to resume", ["--resume"], r"nothing to resume in .*start the run afresh"),
    (
        "NaN pretrained",
        ["--pretrained", "{nan}"],
        r"--pretrained .*nan\.pth holds NaN or infinite weights in 1 "
        r"tensor\(s\): 0\.weight",
    ),
    ("ambiguous pretrained", ["--pretrained", "{dup}"], r"both with and without the 'module\.' prefix"),
]
if not torch.cuda.is_available():
    PARSE_TIME.append(("cuda without a GPU", ["--device", "cuda"], r"CUDA is not available on this machine"))


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(("mistake", "extra", "says"), PARSE_TIME, ids=[m for m, _, _ in PARSE_TIME])
def test_a_mistake_is_one_line_and_exit_2(script, mistake, extra, says, datasets, files, tmp_path, capsys):
    out = tmp_path / "out"
    extra = [e.format(**{k: str(v) for k, v in files.items()}) for e in extra]
    argv = ["--data-dir", str(datasets[script]), "--output-dir", str(out), *FAST, *extra]
    if "--output-dir" in extra:
        argv = argv[:2] + argv[4:]  # the mistake's own --output-dir
    line = call(script, argv, capsys)
    assert line.startswith(f"examples/{script}/train.py: error: "), line
    assert re.search(says, line), line
    assert not out.exists() or not any(out.rglob("*.pt"))  # refused before any checkpoint


def _first_image(script: str, data: Path) -> Path:
    """An image of the test split (read whole by every run)."""
    if script == "affectnet":
        lists = data / "Manually_Annotated_file_lists" / "validation.csv"
        rows = [line.split(",") for line in lists.read_text().splitlines()[1:]]
        return data / "Manually_Annotated_Images" / next(r[0] for r in rows if int(r[6]) < 8)
    suffixes = {".png", ".jpg", ".jpeg"}
    folder = data / {"rafdb": "basic/Image/aligned", "sfew": "Val_Aligned_Faces_new"}[script]
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)[0]


@pytest.mark.parametrize("script", ("affectnet", "rafdb", "sfew"))
@pytest.mark.parametrize("damage", ("missing", "empty", "bomb"))
def test_a_bad_image_is_one_line_naming_it(script, damage, datasets, tmp_path, capsys, monkeypatch):
    if (script, damage) == ("sfew", "missing"):
        pytest.skip("SFEW lists its class folders: a removed image is not listed, so nothing is missing")
    data = tmp_path / "data"
    shutil.copytree(datasets[script], data)
    image = _first_image(script, data)
    if damage == "missing":
        image.unlink()
    elif damage == "empty":
        image.write_bytes(b"")
    else:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64)  # every image is a "bomb" over 2 * 64 pixels
    line = call(script, ["--data-dir", str(data), "--output-dir", str(tmp_path / "out"), *FAST], capsys)
    if damage == "bomb":
        assert "decompression bomb" in line.lower() or "exceeds limit" in line, line
    else:
        assert image.name in line, line


def _ferplus_folder(root: Path) -> Path:
    """FERPlus in the provider's image-folder layout: three 48 x 48 PNGs per split with label.csv."""
    for split in ("FER2013Train", "FER2013Valid", "FER2013Test"):
        folder = root / split
        folder.mkdir(parents=True)
        rows = []
        for i in range(3):
            Image.new("L", (48, 48), 40 * i).save(folder / f"fer{i:07d}.png")
            rows.append(f'fer{i:07d}.png,"(0, 0, 48, 48)",{",".join(["8" if j == i else "0" for j in range(10)])}')
        (folder / "label.csv").write_text("\n".join(rows) + "\n")
    return root


FERPLUS_DATA = [
    ("empty fer2013.csv", lambda d: (d / "fer2013.csv").write_text(""), r"fer2013\.csv: empty file"),
    (
        "non-UTF-8 CSV",
        lambda d: (d / "fer2013new.csv").write_bytes(
            b"\n".join([*(d / "fer2013new.csv").read_bytes().split(b"\n")[:7], b"Training,\xff"])
        ),
        r"fer2013new\.csv, line 8: not UTF-8 text",
    ),
    (
        "bad vote",
        lambda d: (d / "fer2013new.csv").write_text((d / "fer2013new.csv").read_text().replace(",0,", ",x,", 1)),
        r"vote count for .* must be a non-negative",
    ),
    (
        "empty split",
        lambda d: (d / "fer2013.csv").write_text(
            "\n".join(line for line in (d / "fer2013.csv").read_text().splitlines() if not line.endswith("PrivateTest"))
            + "\n"
        ),
        r"rows|split",
    ),
]


@pytest.mark.parametrize(("mistake", "damage", "says"), FERPLUS_DATA, ids=[m for m, _, _ in FERPLUS_DATA])
def test_ferplus_data_mistakes_are_one_line(mistake, damage, says, datasets, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(datasets["ferplus"], data)
    damage(data)
    line = call("ferplus", ["--data-dir", str(data), "--output-dir", str(tmp_path / "out"), *FAST], capsys)
    assert re.search(says, line), line


@pytest.mark.parametrize("damage", ("missing", "empty", "bomb"))
def test_ferplus_folder_image_mistakes_are_one_line(damage, tmp_path, capsys, monkeypatch):
    data = _ferplus_folder(tmp_path / "data")
    image = data / "FER2013Train" / "fer0000001.png"
    if damage == "missing":
        image.unlink()
    elif damage == "empty":
        image.write_bytes(b"")
    else:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64)
    line = call("ferplus", ["--data-dir", str(data), "--output-dir", str(tmp_path / "out"), *FAST], capsys)
    assert "fer000000" in line, line


# ---------------------------------------------------------------------------------------------------------------
# predict.py


@pytest.fixture
def trained(tmp_path) -> Path:
    from .test_predict import checkpoint

    return checkpoint(tmp_path, "fixed")[0]


def _resave(src: Path, dst: Path, change: Callable[[dict], None], *, checksum: bool = True) -> Path:
    from examples.common.engine.checkpoints import atomic_save, load_checkpoint_file

    ckpt = load_checkpoint_file(src)
    change(ckpt)
    atomic_save(ckpt, dst, checksum=checksum)
    return dst


def test_predict_mistakes_are_one_line(trained, tmp_path, capsys):
    face = tmp_path / "face.png"
    Image.new("L", (48, 48), 100).save(face)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    huge = tmp_path / "huge.png"  # a valid PNG header claiming 100000 x 100000 pixels
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    huge.write_bytes(
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )

    def set_weight(name: str, value: torch.Tensor) -> Callable[[dict], None]:
        return lambda c: c["model"].__setitem__(name, value)

    first = next(iter(torch.load(trained, weights_only=True)["model"]))
    nan_weights = _resave(trained, tmp_path / "nan.pt", lambda c: c["model"][first].fill_(float("nan")))
    complex_nan = _resave(
        trained, tmp_path / "complex.pt", set_weight("extra", torch.tensor([complex(float("nan"), 0.0)]))
    )
    other_arch = _resave(trained, tmp_path / "arch.pt", lambda c: c["config"].__setitem__("backbone", "resnet18"))
    no_checksum = _resave(trained, tmp_path / "nosum.pt", lambda c: None, checksum=False)
    duplicate = _resave(trained, tmp_path / "dup.pt", set_weight(f"module.{first}", torch.zeros(1)))
    base = ["--checkpoint", str(trained)]
    table = [
        (["--checkpoint", str(tmp_path / "none.pt"), str(face)], r"no checkpoint at .*none\.pt"),
        (["--checkpoint", str(tmp_path), str(face)], r"no checkpoint at .* \(it is a folder\)"),
        (["--checkpoint", str(nan_weights), str(face)], r"nan\.pt holds NaN or infinite weights"),
        (["--checkpoint", str(complex_nan), str(face)], r"complex\.pt holds NaN or infinite weights in 1 tensor"),
        (["--checkpoint", str(other_arch), str(face)], r"arch\.pt: its weights do not fit the architecture"),
        (["--checkpoint", str(no_checksum), str(face)], r"nosum\.pt has no checksum"),
        (["--checkpoint", str(duplicate), str(face)], r"both with and without the 'module\.' prefix"),
        ([*base, str(tmp_path / "missing.png")], r"no image or folder at .*missing\.png"),
        ([*base, str(empty)], r"cannot read image .*empty\.png"),
        ([*base, str(huge)], r"huge\.png"),
        ([*base, str(face), "--json", str(tmp_path)], r"--json .* is a folder; give a file name"),
        ([*base, str(face), "--device", "bogus"], r"--device 'bogus' is not a device"),
        ([*base, str(face), "--top", "0"], r"--top must be >= 1"),
        ([*base, str(face), "--landmarks", str(face)], r"do not use landmarks"),
    ]
    if not torch.cuda.is_available():
        table.append(([*base, str(face), "--device", "cuda"], r"CUDA is not available"))
    for argv, says in table:
        line = call("predict", argv, capsys)
        assert line.startswith("examples/predict.py: error: ") and re.search(says, line), (argv, line)
