"""Predict expressions with a trained checkpoint and draw the attention figure (paper Fig. 6).

    python examples/predict.py --checkpoint OUT/checkpoints/best.pt face1.png face2.jpg faces_dir/ \
        [--attention-figure attention.png] [--device cpu|cuda] [--top 3]

Inputs are pre-cropped faces (no face detector is needed or downloaded): image files, or folders of them.
Each face is read like the training data (RGB, or grey replicated to three channels), resized to the
checkpoint's ``image_size`` and fed in [0, 1]. The script prints the top predictions with their
probabilities; with ``--attention-figure`` a RAN checkpoint also gets the figure of every face, its regions
(boxes drawn on the face) and their final attention weights, the highest in red and the lowest in blue.
Works with the checkpoints of every example script (the class order is read from the checkpoint).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from examples.common.engine import load_checkpoint_file
from examples.common.models import build_model, is_ran_output

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


def load_image(path: Path, size: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return data.reshape(size, size, 3).permute(2, 0, 1).float() / 255


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="face images or folders of them")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--attention-figure", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--max-figure-faces", type=int, default=8)
    args = parser.parse_args(argv)

    ckpt = load_checkpoint_file(args.checkpoint)
    cfg, classes = ckpt["config"], ckpt["class_names"]
    model = build_model(cfg, len(classes))
    model.load_state_dict(ckpt["model"])
    model.to(args.device).eval()
    files = collect_images(args.images)
    images = torch.stack([load_image(f, cfg["image_size"]) for f in files]).to(args.device)
    with torch.no_grad():
        out = model(images)
    probs = torch.softmax(out.logits.float(), -1).cpu()
    results = []
    for path, p in zip(files, probs, strict=True):
        top = torch.topk(p, min(args.top, len(classes)))
        ranked = [(classes[i], float(v)) for v, i in zip(top.values, top.indices, strict=True)]
        results.append({"image": str(path), "prediction": ranked[0][0], "top": ranked})
        print(f"{path}: " + ", ".join(f"{name} {value:.3f}" for name, value in ranked))
    if args.attention_figure is not None:
        if not is_ran_output(out):
            raise SystemExit("error: --attention-figure needs a RAN checkpoint (this one is a baseline)")
        from examples.common.plots import plot_attention

        n = min(len(files), args.max_figure_faces)
        titles = [f"{f.name}: {r['prediction']}" for f, r in zip(files[:n], results[:n], strict=True)]
        plot_attention(images[:n].cpu(), out.regions.boxes[:n].cpu(), out.relation_attention.weights[:n].cpu(),
                       args.attention_figure, titles=titles, mask=out.regions.mask[:n].cpu(),
                       crops=out.regions.crops[:n].cpu())
        print(f"attention figure: {args.attention_figure}")
    return results


if __name__ == "__main__":
    main()
