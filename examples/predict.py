"""Predict expressions with a trained checkpoint and draw the attention figure (paper Fig. 6).

    python examples/predict.py --checkpoint OUT/checkpoints/best.pt face1.png face2.jpg faces_dir/
        [--landmarks POINTS.txt] [--attention-figure attention.png] [--device cpu|cuda] [--top 3]

Positional inputs are pre-cropped faces (no detector runs): image files, or folders of them.
Each face is read like the training data (RGB, or grey replicated to three channels), resized to the
checkpoint's ``image_size`` and fed in [0, 1]. The script prints the top predictions with their
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
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from examples.common.detect import DetectedFace, detect_faces, load_detector
from examples.common.engine import RunConfig, load_checkpoint_file
from examples.common.engine.cli import ScriptParser
from examples.common.models import build_model, is_ran_output, uses_landmarks
from examples.common.subsets import read_text_lines
from region_attention.functional import reduce_landmarks

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


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


def load_image(path: Path, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """The face as float ``(3, size, size)`` in [0, 1], and the file's ``(width, height)``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            original = image.size
            image = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return data.reshape(size, size, 3).permute(2, 0, 1).float() / 255, original


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
            raise ValueError(f"{path}, line {number}: expected 10 numbers (5 points) or 136 (68 points) after the "
                             f"image name, got {numbers.numel()}")
        points[name] = reduce_landmarks(numbers.reshape(1, -1, 2))[0]
    return points


def landmarks_for(files: list[Path], table: dict[str, torch.Tensor], sizes: list[tuple[int, int]],
                  size: int) -> torch.Tensor:
    """``(N, 5, 2)`` points of every image, mapped into the ``size x size`` network input."""
    out = []
    for path, (width, height) in zip(files, sizes, strict=True):
        points = table.get(str(path), table.get(path.name))
        if points is None:
            raise ValueError(f"--landmarks has no line for {path} (lines start with the file name or the path)")
        out.append(points * torch.tensor([size / width, size / height]))
    return torch.stack(out)


USAGE = ("%(prog)s --checkpoint CKPT (FACE... | --detect PHOTO...) [--landmarks FILE]\n"
         "        [--attention-figure PNG] [--json OUT] [--device DEVICE] [--top N] [options]")


def build_parser() -> argparse.ArgumentParser:
    parser = ScriptParser(prog="examples/predict.py", usage=USAGE, description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    required = parser.add_argument_group("required arguments")
    required.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT",
                          help="best.pt or last.pt of an example run (required)")
    inputs = parser.add_argument_group("inputs (face images, or photos with --detect; one of the two)")
    inputs.add_argument("images", nargs="*", type=Path, metavar="FACE",
                        help="pre-cropped face images, or folders of them")
    inputs.add_argument("--detect", nargs="+", type=Path, default=[], metavar="PHOTO",
                        help="photos (or folders of them) in which MTCNN finds every face (needs facenet-pytorch; "
                             "default: none, the inputs are pre-cropped faces)")
    inputs.add_argument("--face-margin", type=float, default=0.1, metavar="F",
                        help="--detect: grow the square face crop by this fraction of its side on each side "
                             "(default: %(default)s)")
    inputs.add_argument("--min-face-score", type=float, default=0.9, metavar="P",
                        help="--detect: smallest detector confidence kept as a face (default: %(default)s)")
    inputs.add_argument("--landmarks", type=Path, default=None, metavar="FILE",
                        help="face images: 5 (or 68) points per image, for checkpoints with landmark regions "
                             "(default: none)")
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--top", type=int, default=3, metavar="N",
                         help="predictions printed per face (default: %(default)s)")
    outputs.add_argument("--json", type=Path, default=None, metavar="OUT",
                         help="write per face: image, box, landmarks, probabilities to this JSON file "
                              "(default: none)")
    outputs.add_argument("--attention-figure", type=Path, default=None, metavar="PNG",
                         help="write the attention figure of a RAN checkpoint to this PNG (default: none)")
    outputs.add_argument("--max-figure-faces", type=int, default=8, metavar="N",
                         help="faces in the attention figure (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.images) == bool(args.detect):
        parser.error("give face images, or photos with --detect PHOTO... (one of the two)")
    if args.detect and args.landmarks is not None:
        parser.error("--detect finds the landmarks itself; drop --landmarks")
    if args.face_margin < 0 or not 0 <= args.min_face_score <= 1:
        parser.error(f"expected --face-margin >= 0 and --min-face-score in [0, 1], got {args.face_margin} and "
                     f"{args.min_face_score}")
    for option, value in (("--top", args.top), ("--max-figure-faces", args.max_figure_faces)):
        if value < 1:
            parser.error(f"{option} must be >= 1, got {value}")
    ckpt = load_checkpoint_file(args.checkpoint)
    cfg, classes = RunConfig.from_dict(ckpt["config"]), ckpt["class_names"]
    if uses_landmarks(cfg) and args.landmarks is None and not args.detect:
        parser.error("this checkpoint was trained with landmark regions (--regions landmarks): give --landmarks "
                     "FILE with 5 (or 68) points per image")
    if args.landmarks is not None and not uses_landmarks(cfg):
        parser.error("this checkpoint's regions do not use landmarks (they would be ignored); drop --landmarks")
    model = build_model(dataclasses.replace(cfg, pretrained=None), len(classes))  # every weight is in the checkpoint
    model.load_state_dict(ckpt["model"])
    model.to(args.device).eval()
    size = cfg.image_size
    landmarks = None
    if args.detect:
        faces = find_faces(parser, args, size)
        if not faces:
            write_json(args.json, [])
            return []
        files = [Path(f.image) for f in faces]
        names = [f"{f.image} [{', '.join(f'{v:.0f}' for v in f.box)}]" for f in faces]
        records = [{"image": f.image, "box": list(f.box), "landmarks": f.landmarks.tolist(), "score": f.score}
                   for f in faces]
        images = torch.stack([f.face for f in faces]).to(args.device)
        if uses_landmarks(cfg):
            landmarks = torch.stack([f.face_landmarks for f in faces]).to(args.device)
    else:
        files = collect_images(args.images)
        loaded = [load_image(f, size) for f in files]
        names = [str(f) for f in files]
        images = torch.stack([image for image, _ in loaded]).to(args.device)
        records = [{"image": str(f), "box": [0.0, 0.0, float(w), float(h)], "landmarks": None} for f, (_, (w, h))
                   in zip(files, loaded, strict=True)]
        if args.landmarks is not None:
            table = read_landmarks(args.landmarks)
            landmarks = landmarks_for(files, table, [s for _, s in loaded], size).to(args.device)
            for record, points in zip(records, landmarks.cpu(), strict=True):  # back to pixels of the file
                record["landmarks"] = (points * torch.tensor(record["box"][2:]) / size).tolist()
    with torch.no_grad():
        out = model(images, landmarks)
    probs = torch.softmax(out.logits.float(), -1).cpu()
    results = []
    for label, record, p in zip(names, records, probs, strict=True):
        top = torch.topk(p, min(args.top, len(classes)))
        ranked = [(classes[i], float(v)) for v, i in zip(top.values, top.indices, strict=True)]
        results.append({**record, "probabilities": dict(zip(classes, p.tolist(), strict=True)),
                        "prediction": ranked[0][0], "top": ranked})
        print(f"{label}: " + ", ".join(f"{name} {value:.3f}" for name, value in ranked))
    write_json(args.json, results)
    if args.attention_figure is not None:
        if not is_ran_output(out):
            parser.error("--attention-figure needs a RAN checkpoint (this one is a baseline)")
        from examples.common.plots import plot_attention

        n = min(len(files), args.max_figure_faces)
        titles = [f"{f.name}: {r['prediction']}" for f, r in zip(files[:n], results[:n], strict=True)]
        plot_attention(images[:n].cpu(), out.regions.boxes[:n].cpu(), out.relation_attention.weights[:n].cpu(),
                       args.attention_figure, titles=titles, mask=out.regions.mask[:n].cpu(),
                       crops=None if out.regions.crops is None else out.regions.crops[:n].cpu())  # one-pass: none
        print(f"attention figure: {args.attention_figure}")
    return results


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


def write_json(path: Path | None, results: list[dict]) -> None:
    """``--json``: the records of every face (``top`` and ``prediction`` are left to the printed lines)."""
    if path is None:
        return
    keys = ("image", "box", "landmarks", "score", "probabilities")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{k: r[k] for k in keys if k in r} for r in results], indent=2) + "\n")
    print(f"predictions: {path}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:  # bad input: one line, exit status 2
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"examples/predict.py: error: {first_line}", file=sys.stderr)
        raise SystemExit(2) from None
