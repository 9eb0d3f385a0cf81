"""Predict expressions with a trained checkpoint and draw the attention figure (paper Fig. 6).

    python examples/predict.py --checkpoint OUT/checkpoints/best.pt face1.png face2.jpg faces_dir/
        [--landmarks POINTS.txt] [--attention-figure attention.png] [--device cpu|cuda] [--top 3]

Inputs are pre-cropped faces (no face detector is used or downloaded): image files, or folders of them.
Each face is read like the training data (RGB, or grey replicated to three channels), resized to the
checkpoint's ``image_size`` and fed in [0, 1]. The script prints the top predictions with their
probabilities; with ``--attention-figure`` a RAN checkpoint also gets the figure of every face, its regions
(boxes drawn on the face) and their final attention weights, the highest in red and the lowest in blue.

Works with the checkpoints of every example script (the class order and the region layout are read from the
checkpoint). A checkpoint trained with landmark regions (``--regions landmarks``) needs the landmarks of every
face: ``--landmarks FILE`` has one line per image, ``<image> x1 y1 ... x5 y5`` (the 5 points: eye centres,
nose tip, mouth corners) or ``<image>`` and the 136 values of the 68 iBUG points (reduced to 5 with
``region_attention.functional.reduce_landmarks``), in pixels of the image file, separated by spaces or commas;
``<image>`` is the file name or the path as given. Without it such a checkpoint is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from examples.common.engine import load_checkpoint_file
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="examples/predict.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="face images or folders of them")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="best.pt or last.pt of an example run (required)")
    parser.add_argument("--landmarks", type=Path, default=None,
                        help="5 (or 68) points per image, for checkpoints with landmark regions (default: none)")
    parser.add_argument("--attention-figure", type=Path, default=None,
                        help="write the attention figure of a RAN checkpoint to this PNG (default: none)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--top", type=int, default=3, help="predictions printed per face (default: %(default)s)")
    parser.add_argument("--max-figure-faces", type=int, default=8,
                        help="faces in the attention figure (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    ckpt = load_checkpoint_file(args.checkpoint)
    cfg, classes = ckpt["config"], ckpt["class_names"]
    if uses_landmarks(cfg) and args.landmarks is None:
        parser.error("this checkpoint was trained with landmark regions (--regions landmarks): give --landmarks "
                     "FILE with 5 (or 68) points per image")
    if args.landmarks is not None and not uses_landmarks(cfg):
        parser.error("this checkpoint's regions do not use landmarks (they would be ignored); drop --landmarks")
    model = build_model(cfg, len(classes))
    model.load_state_dict(ckpt["model"])
    model.to(args.device).eval()
    files = collect_images(args.images)
    size = cfg["image_size"]
    loaded = [load_image(f, size) for f in files]
    images = torch.stack([image for image, _ in loaded]).to(args.device)
    landmarks = None
    if args.landmarks is not None:
        table = read_landmarks(args.landmarks)
        landmarks = landmarks_for(files, table, [s for _, s in loaded], size).to(args.device)
    with torch.no_grad():
        out = model(images, landmarks)
    probs = torch.softmax(out.logits.float(), -1).cpu()
    results = []
    for path, p in zip(files, probs, strict=True):
        top = torch.topk(p, min(args.top, len(classes)))
        ranked = [(classes[i], float(v)) for v, i in zip(top.values, top.indices, strict=True)]
        results.append({"image": str(path), "prediction": ranked[0][0], "top": ranked})
        print(f"{path}: " + ", ".join(f"{name} {value:.3f}" for name, value in ranked))
    if args.attention_figure is not None:
        if not is_ran_output(out):
            parser.error("--attention-figure needs a RAN checkpoint (this one is a baseline)")
        from examples.common.plots import plot_attention

        n = min(len(files), args.max_figure_faces)
        titles = [f"{f.name}: {r['prediction']}" for f, r in zip(files[:n], results[:n], strict=True)]
        plot_attention(images[:n].cpu(), out.regions.boxes[:n].cpu(), out.relation_attention.weights[:n].cpu(),
                       args.attention_figure, titles=titles, mask=out.regions.mask[:n].cpu(),
                       crops=out.regions.crops[:n].cpu())
        print(f"attention figure: {args.attention_figure}")
    return results


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:  # bad input: one line, exit status 2
        print(f"examples/predict.py: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
