"""Make the figures of the user guide (run once; the PNG files are committed beside this script).

    python docs/_static/make_figures.py

``regions.png``: the three region strategies of the paper (Sec. III-C, Fig. 2) on one generated face, drawn
with the boxes ``RegionCropper`` itself returns: the paper's five fixed boxes, one draw of random boxes
(``generator`` seeded with 0) and the landmark boxes (radius 0.4, ``border="shift"``), then the six region
images the backbone sees for the fixed strategy. The face comes from the examples' synthetic-data renderer
(``examples/common/synthetic/``, the repository's one face drawer).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SIZE = 224


def synthetic_face() -> tuple[torch.Tensor, torch.Tensor]:
    """One RGB face ``(1, 3, S, S)`` in [0, 1] and its 68 landmarks ``(1, 68, 2)`` in pixels."""
    sys.path.insert(0, str(ROOT))
    from examples.common.synthetic import render_batch, sample_faces

    g = torch.Generator().manual_seed(3)
    params = sample_faces([1], generator=g, yaw=[12.0], face_scale=(1.0, 1.0), max_shift=0.0)
    images, landmarks = render_batch(params, SIZE, channels=3, generator=g)
    return images.float() / 255, landmarks


def main() -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from region_attention import RegionCropper
    from region_attention.functional import reduce_landmarks

    image, landmarks = synthetic_face()
    points = reduce_landmarks(landmarks)

    fixed = RegionCropper(SIZE)(image)
    random = RegionCropper(SIZE, strategy="random").train()(image, generator=torch.Generator().manual_seed(0))
    marks = RegionCropper(SIZE, strategy="landmarks")(image, landmarks=points)

    colours = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"]
    names = ["top-left", "top-right", "center-down", "center 0.9", "center 0.85"]
    fig = plt.figure(figsize=(12, 7.0), dpi=100)
    grid = fig.add_gridspec(2, 6, height_ratios=[2.2, 1.0], hspace=0.32, wspace=0.08)
    panels = [
        (grid[0, 0:2], fixed, 'fixed position cropping\n(boxes="paper")', names),
        (grid[0, 2:4], random, "random cropping\n(scale 0.7-0.95, one draw)", None),
        (
            grid[0, 4:6],
            marks,
            'landmark-based cropping\n(radius 0.4, border="shift")',
            ["eye (image left)", "eye (image right)", "nose tip", "mouth corner", "mouth corner"],
        ),
    ]
    for cell, regions, title, labels in panels:
        ax = fig.add_subplot(cell)
        ax.imshow(image[0].permute(1, 2, 0).numpy(), extent=(0, SIZE, SIZE, 0))
        for k in range(1, regions.boxes.shape[1]):  # region 0 is the whole face (0, 0, W, H)
            x1, y1, x2, y2 = regions.boxes[0, k].tolist()
            colour = colours[(k - 1) % len(colours)]
            # Each outline is drawn k - 1 pixels inside its box so that boxes sharing an edge stay visible.
            inset = float(k - 1)
            ax.add_patch(
                Rectangle(
                    (x1 + inset, y1 + inset),
                    x2 - x1 - 2 * inset,
                    y2 - y1 - 2 * inset,
                    fill=False,
                    lw=2,
                    ec=colour,
                    label=f"{k}: {labels[k - 1]}" if labels is not None else None,
                )
            )
        if labels is not None:
            ax.legend(
                loc="upper center",
                bbox_to_anchor=(0.5, -0.01),
                ncol=3,
                fontsize=8,
                frameon=False,
                handlelength=1.2,
                columnspacing=0.8,
            )
        if regions is marks:
            ax.scatter(points[0, :, 0], points[0, :, 1], s=30, c=colours, edgecolors="black", zorder=3)
        ax.set_xlim(0, SIZE)
        ax.set_ylim(SIZE, 0)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    crop_titles = ["$I_0$ whole face", *(f"$I_{k}$ {n}" for k, n in enumerate(names, start=1))]
    for k in range(fixed.crops.shape[1]):
        ax = fig.add_subplot(grid[1, k])
        ax.imshow(fixed.crops[0, k].permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(crop_titles[k], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if k:
            for side in ax.spines.values():
                side.set_edgecolor(colours[k - 1])
                side.set_linewidth(2.5)
    fig.suptitle("The regions of one face; below, the fixed regions resized to the backbone's input size", fontsize=11)
    path = HERE / "regions.png"
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    # 256 colours look the same here and make the committed file a third of the size.
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)
    assert math.isfinite(float(fixed.crops.sum()))
    return path


if __name__ == "__main__":
    print(main())
