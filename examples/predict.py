"""Predict expressions with a trained checkpoint and draw the attention figure (paper Fig. 6).

    python examples/predict.py --checkpoint OUT/checkpoints/best.pt face1.png face2.jpg faces_dir/
        [--landmarks POINTS.txt] [--attention-figure attention.png] [--device cpu|cuda] [--top 3]

Positional inputs are pre-cropped faces (no detector runs): image files, or folders of them.
Each face is read by the training reader itself (``examples.common.folder_data.ImageListDataset``): the same
pixels for every format training accepts (8- and 16-bit, palette, alpha, float TIFF), the same channels (a
checkpoint trained on grey faces, FERPlus, gets grey faces whatever the file holds), the same ``--fit`` and size,
fed in [0, 1]. The script prints the top predictions with their
probabilities; with ``--attention-figure`` a RAN checkpoint also gets the figure of every face, its regions
(boxes drawn on the face) and their final attention weights, the highest in red and the lowest in blue.

Photos (``--detect PHOTO...``): MTCNN (facenet-pytorch, ``pip install "region-attention[detect]"``; its weights
ship in its wheel) finds every face, which is cut out as a square around the face box (grown by
``--face-margin``), resized to the checkpoint's ``image_size``, and given the detected landmarks; one line per
face: the photo, the face box ``[x1, y1, x2, y2]`` in photo pixels, the top predictions. A photo without a face
says so. ``--json OUT`` writes per face ``image``, ``box``, ``landmarks`` (5 points, photo pixels),
``probabilities`` (class name -> probability) and, with ``--detect``, the detector's ``score``:

    python examples/predict.py --checkpoint OUT/checkpoints/best.pt --detect photo.jpg photos_dir/
        [--attention-figure attention.png] [--json faces.json]

Works with the checkpoints of every example script (the class order and the region layout are read from the
checkpoint). A checkpoint trained with landmark regions (``--regions landmarks``) needs the landmarks of every
face (``--detect`` finds them): ``--landmarks FILE`` has one line per image, ``<image> x1 y1 ... x5 y5``
(the 5 points: eye centres, nose tip, mouth corners) or ``<image>`` and the 136 values of the 68 iBUG points
(reduced to 5 with ``region_attention.functional.reduce_landmarks``), in pixels of the image file, separated
by spaces or commas; ``<image>`` is the file name or the path as given. Without it such a checkpoint is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from examples.common.detect import DetectedFace, detect_faces, load_detector
from examples.common.engine import CheckpointError, RunConfig, load_checkpoint_file
from examples.common.engine.checkpoints import load_weights
from examples.common.engine.cli import ScriptParser, device_problem, run_script, writable_problem
from examples.common.folder_data import ImageListDataset, ImageRecord
from examples.common.models import build_model, is_ran_output, uses_landmarks
from examples.common.subsets import read_text_lines
from region_attention.functional import reduce_landmarks

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
#: How ``load_image`` reads faces when the caller gives no checkpoint record: RGB, stretched to square.
PLAIN_READING: dict[str, str | None] = {"image_channels": "RGB", "fit": None}


def collect_images(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no image or folder at {path}")
    if not files:
        raise ValueError(f"no images found in {', '.join(map(str, paths))}")
    return files


def load_image(path: Path, size: int, record: Mapping[str, Any] | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """The face as float ``(3, size, size)`` in [0, 1], read as the run of the checkpoint ``record`` read its
    training faces (its ``image_channels`` and ``fit``), and the file's ``(width, height)``. Errors name the
    file (``OSError``)."""
    from PIL import Image

    record = record or PLAIN_READING
    channels = record["image_channels"]
    if not isinstance(channels, str):
        raise TypeError(f"the checkpoint's image_channels must be a string such as 'RGB', got {channels!r}")
    dataset = ImageListDataset(
        [ImageRecord(str(path), path, 0)], size, fit=record.get("fit") or "stretch", channels=channels
    )
    image = dataset[0][0]
    try:
        with Image.open(path) as opened:
            original = opened.size
    except OSError as err:  # read_image above has read it: only a race can get here
        raise OSError(f"cannot read image {path}: {err}") from err
    return image.float() / 255, original


def grey_like_training(faces: torch.Tensor) -> torch.Tensor:
    """Float RGB faces ``(N, 3, S, S)`` in [0, 1] as a grey-trained run reads them: PIL's ``L`` conversion
    (ITU-R 601 luma), quantised to 8 bits, replicated to three channels."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=faces.dtype, device=faces.device).view(1, 3, 1, 1)
    grey = torch.round((faces * weights).sum(1, keepdim=True) * 255) / 255
    return grey.expand_as(faces).contiguous()


def read_landmarks(path: Path) -> dict[str, torch.Tensor]:
    """``--landmarks``: image name -> ``(5, 2)`` points in pixels of the image file (68 points reduced)."""
    points: dict[str, torch.Tensor] = {}
    for number, line in read_text_lines(path, "landmarks file"):
        name, *values = line.replace(",", " ").split()
        try:
            numbers = torch.tensor([float(v) for v in values], dtype=torch.float32)
        except ValueError:
            raise ValueError(f"{path}, line {number}: expected '<image> x1 y1 ... x5 y5', got {line!r}") from None
        if numbers.numel() not in (10, 136):
            raise ValueError(
                f"{path}, line {number}: expected 10 numbers (5 points) or 136 (68 points) after the "
                f"image name, got {numbers.numel()}"
            )
        points[name] = reduce_landmarks(numbers.reshape(1, -1, 2))[0]
    return points


def landmarks_for(
    files: list[Path], table: dict[str, torch.Tensor], sizes: list[tuple[int, int]], size: int
) -> torch.Tensor:
    """``(N, 5, 2)`` points of every image, mapped into the ``size x size`` network input."""
    out = []
    for path, (width, height) in zip(files, sizes, strict=True):
        points = table.get(str(path), table.get(path.name))
        if points is None:
            raise ValueError(f"--landmarks has no line for {path} (lines start with the file name or the path)")
        out.append(points * torch.tensor([size / width, size / height]))
    return torch.stack(out)


USAGE = (
    "%(prog)s --checkpoint CKPT (FACE... | --detect PHOTO...) [--landmarks FILE]\n"
    "        [--attention-figure PNG] [--json OUT] [--device DEVICE] [--top N] [options]"
)


def build_parser() -> argparse.ArgumentParser:
    parser = ScriptParser(
        prog="examples/predict.py",
        usage=USAGE,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    required = parser.add_argument_group("required arguments")
    required.add_argument(
        "--checkpoint", type=Path, required=True, metavar="CKPT", help="best.pt or last.pt of an example run (required)"
    )
    add_input_arguments(parser)
    add_output_arguments(parser)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    return parser


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """The faces: pre-cropped images (with their landmarks), or photos in which the detector finds them."""
    inputs = parser.add_argument_group("inputs (face images, or photos with --detect; one of the two)")
    inputs.add_argument(
        "images", nargs="*", type=Path, metavar="FACE", help="pre-cropped face images, or folders of them"
    )
    inputs.add_argument(
        "--detect",
        nargs="+",
        type=Path,
        default=[],
        metavar="PHOTO",
        help="photos (or folders of them) in which MTCNN finds every face (needs facenet-pytorch; "
        "default: none, the inputs are pre-cropped faces)",
    )
    inputs.add_argument(
        "--face-margin",
        type=float,
        default=0.1,
        metavar="F",
        help="--detect: grow the square face crop by this fraction of its side on each side (default: %(default)s)",
    )
    inputs.add_argument(
        "--min-face-score",
        type=float,
        default=0.9,
        metavar="P",
        help="--detect: smallest detector confidence kept as a face (default: %(default)s)",
    )
    inputs.add_argument(
        "--landmarks",
        type=Path,
        default=None,
        metavar="FILE",
        help="face images: 5 (or 68) points per image, for checkpoints with landmark regions (default: none)",
    )


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """What is printed and written: the top predictions, the JSON records, the attention figure."""
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument(
        "--top", type=int, default=3, metavar="N", help="predictions printed per face (default: %(default)s)"
    )
    outputs.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="OUT",
        help="write per face: image, box, landmarks, probabilities to this JSON file (default: none)",
    )
    outputs.add_argument(
        "--attention-figure",
        type=Path,
        default=None,
        metavar="PNG",
        help="write the attention figure of a RAN checkpoint to this PNG (default: none)",
    )
    outputs.add_argument(
        "--max-figure-faces",
        type=int,
        default=8,
        metavar="N",
        help="faces in the attention figure (default: %(default)s)",
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.images) == bool(args.detect):
        parser.error("give face images, or photos with --detect PHOTO... (one of the two)")
    if args.detect and args.landmarks is not None:
        parser.error("--detect finds the landmarks itself; drop --landmarks")
    if not (args.face_margin >= 0 and math.isfinite(args.face_margin)) or not 0 <= args.min_face_score <= 1:
        parser.error(
            f"expected --face-margin >= 0 and --min-face-score in [0, 1], got {args.face_margin} and "
            f"{args.min_face_score}"
        )
    for option, value in (("--top", args.top), ("--max-figure-faces", args.max_figure_faces)):
        if value < 1:
            parser.error(f"{option} must be >= 1, got {value}")
    for option, path in (("--json", args.json), ("--attention-figure", args.attention_figure)):
        if path is not None:
            problem = (
                f"{option} {path} is a folder; give a file name"
                if path.is_dir()
                else writable_problem(path.parent, f"{option} {path}:")
            )
            if problem:
                parser.error(problem)
    problem = device_problem(args.device)
    if problem:
        parser.error(problem)
    # every ValueError here is about the inputs (a landmarks file, an image list, a checkpoint): one line, exit 2
    return run_script(parser, lambda: predict(parser, args), also=(ValueError,))


@dataclasses.dataclass
class Faces:
    """The faces a run predicts, on the device: ``images`` ``(N, 3, S, S)`` in [0, 1], ``landmarks``
    ``(N, 5, 2)`` in network-input pixels (None for a checkpoint whose regions do not use them), and per face
    its file, its printed name and its JSON record (``image``, ``box``, ``landmarks`` in pixels of the file)."""

    files: list[Path]
    names: list[str]
    records: list[dict[str, Any]]
    images: torch.Tensor
    landmarks: torch.Tensor | None


def predict(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[dict[str, Any]]:
    """What :func:`main` does once the command line is checked (errors naming a file: one line, exit 2)."""
    ckpt = load_checkpoint_file(args.checkpoint)
    cfg, classes = RunConfig.from_dict(ckpt["config"]), ckpt["class_names"]
    model = load_model(parser, args, ckpt, cfg)
    faces = detected_faces(parser, args, cfg, ckpt["config"]) if args.detect else face_images(args, cfg, ckpt["config"])
    if faces is None:
        write_json(args.json, [])
        return []
    with torch.no_grad():
        out = model(faces.images, faces.landmarks)
    probs = torch.softmax(out.logits.float(), -1).cpu()
    if not bool(torch.isfinite(probs).all()):
        raise CheckpointError(f"{args.checkpoint}: the model gives non-finite predictions on these faces")
    results = rank_classes(faces, probs, classes, args.top)
    write_json(args.json, results)
    if args.attention_figure is not None and is_ran_output(out):
        draw_attention(faces, results, out, args.attention_figure, args.max_figure_faces)
    return results


def load_model(
    parser: argparse.ArgumentParser, args: argparse.Namespace, ckpt: dict[str, Any], cfg: RunConfig
) -> torch.nn.Module:
    """The checkpoint's network on ``--device`` in eval mode, once the options fit it (landmarks for landmark
    regions, a RAN for ``--attention-figure``)."""
    if uses_landmarks(cfg) and args.landmarks is None and not args.detect:
        parser.error(
            "this checkpoint was trained with landmark regions (--regions landmarks): give --landmarks "
            "FILE with 5 (or 68) points per image"
        )
    if args.landmarks is not None and not uses_landmarks(cfg):
        parser.error("this checkpoint's regions do not use landmarks (they would be ignored); drop --landmarks")
    try:  # every weight is in the checkpoint
        model = build_model(dataclasses.replace(cfg, pretrained=None), len(ckpt["class_names"]))
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"{args.checkpoint}: its recorded configuration does not build a model ({err})") from err
    if args.attention_figure is not None and cfg.model != "ran":
        parser.error("--attention-figure needs a RAN checkpoint (this one is a baseline)")
    load_weights(model, ckpt["model"], args.checkpoint)
    return model.to(args.device).eval()


def detected_faces(
    parser: argparse.ArgumentParser, args: argparse.Namespace, cfg: RunConfig, record: Mapping[str, Any]
) -> Faces | None:
    """``--detect``: every face the detector finds in the photos, read as the run of ``record`` read its
    training faces; None when it finds none."""
    found = find_faces(parser, args, cfg.image_size)
    if not found:
        return None
    images = torch.stack([f.face for f in found])
    if record["image_channels"] == "L":
        images = grey_like_training(images)
    return Faces(
        files=[Path(f.image) for f in found],
        names=[f"{f.image} [{', '.join(f'{v:.0f}' for v in f.box)}]" for f in found],
        records=[
            {"image": f.image, "box": list(f.box), "landmarks": f.landmarks.tolist(), "score": f.score} for f in found
        ],
        images=images.to(args.device),
        landmarks=torch.stack([f.face_landmarks for f in found]).to(args.device) if uses_landmarks(cfg) else None,
    )


def face_images(args: argparse.Namespace, cfg: RunConfig, record: Mapping[str, Any]) -> Faces:
    """Pre-cropped faces, read as the run of ``record`` read its training faces, with the ``--landmarks`` of
    each (mapped into the network input, and back into pixels of the file for the records)."""
    size = cfg.image_size
    files = collect_images(args.images)
    loaded = [load_image(f, size, record) for f in files]
    images = torch.stack([image for image, _ in loaded]).to(args.device)
    records: list[dict[str, Any]] = [
        {"image": str(f), "box": [0.0, 0.0, float(w), float(h)], "landmarks": None}
        for f, (_, (w, h)) in zip(files, loaded, strict=True)
    ]
    landmarks = None
    if args.landmarks is not None:
        table = read_landmarks(args.landmarks)
        landmarks = landmarks_for(files, table, [s for _, s in loaded], size).to(args.device)
        for entry, points in zip(records, landmarks.cpu(), strict=True):  # back to pixels of the file
            entry["landmarks"] = (points * torch.tensor(entry["box"][2:]) / size).tolist()
    return Faces(files, [str(f) for f in files], records, images, landmarks)


def rank_classes(faces: Faces, probs: torch.Tensor, classes: list[str], top: int) -> list[dict[str, Any]]:
    """Per face its record with every class's probability, the prediction and the ``top`` classes, printed
    one line a face."""
    results = []
    for label, record, p in zip(faces.names, faces.records, probs, strict=True):
        best = torch.topk(p, min(top, len(classes)))
        ranked = [(classes[i], float(v)) for v, i in zip(best.values, best.indices, strict=True)]
        results.append(
            {
                **record,
                "probabilities": dict(zip(classes, p.tolist(), strict=True)),
                "prediction": ranked[0][0],
                "top": ranked,
            }
        )
        print(f"{label}: " + ", ".join(f"{name} {value:.3f}" for name, value in ranked))
    return results


def draw_attention(faces: Faces, results: list[dict[str, Any]], out: Any, path: Path, max_faces: int) -> None:
    """``--attention-figure``: the regions and final attention weights of the first ``max_faces`` faces."""
    from examples.common.plots import plot_attention

    n = min(len(faces.files), max_faces)
    titles = [f"{f.name}: {r['prediction']}" for f, r in zip(faces.files[:n], results[:n], strict=True)]
    plot_attention(
        faces.images[:n].cpu(),
        out.regions.boxes[:n].cpu(),
        out.relation_attention.weights[:n].cpu(),
        path,
        titles=titles,
        mask=out.regions.mask[:n].cpu(),
        crops=None if out.regions.crops is None else out.regions.crops[:n].cpu(),
    )  # one-pass: none
    print(f"attention figure: {path}")


def find_faces(parser: argparse.ArgumentParser, args: argparse.Namespace, size: int) -> list[DetectedFace]:
    """``--detect``: every face of every photo, aligned to ``size``; photos without a face are reported."""
    try:
        detector = load_detector(args.device)
    except ImportError as err:
        parser.error(str(err))
    faces: list[DetectedFace] = []
    for photo in collect_images(args.detect):
        found = detect_faces(detector, photo, size, margin=args.face_margin, min_score=args.min_face_score)
        if not found:
            print(f"{photo}: no face found")
        faces += found
    return faces


def write_json(path: Path | None, results: list[dict[str, Any]]) -> None:
    """``--json``: the records of every face (``top`` and ``prediction`` are left to the printed lines)."""
    if path is None:
        return
    keys = ("image", "box", "landmarks", "score", "probabilities")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([{k: r[k] for k in keys if k in r} for r in results], indent=2) + "\n")
    except OSError as err:
        raise OSError(f"--json: cannot write {path}: {err.strerror or err}") from None
    print(f"predictions: {path}")


if __name__ == "__main__":
    main()
