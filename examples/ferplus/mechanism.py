r"""The demo's measurement of the mechanism: occluder coverage against attention weight, within each face.

The generator knows where every occluder is (``occluders.npz``), so on generated faces the paper's Fig. 6 can be
put in numbers: :func:`region_coverage` gives each region box's occluder coverage, :func:`attention_on` a RAN
model's final weights, and :func:`mechanism_figures` compares the two within each face (the weight of the most
and of the least covered region, and their rank correlation).

Why a model's weights follow the occluder or not is measured by :func:`gate_saliency` and
:func:`field_figures`: which input pixels each region's self-attention gate :math:`\mu_i` responds to (the
gradient of the gate with respect to the image), how much of that lies inside the region's own box, and how
much of it the occluder covers (the coverage of the region as the gate "sees" it).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from examples.common.synthetic import box_coverage

__all__ = [
    "attention_on",
    "average_ranks",
    "box_weights",
    "field_figures",
    "gate_saliency",
    "mechanism_figures",
    "region_coverage",
    "relative_weights",
    "spearman",
]


def region_coverage(alpha: Tensor, boxes: Tensor, image_size: int | tuple[int, int]) -> Tensor:
    """The share of every region box that the face's occluder covers: ``alpha`` ``(N, H, W)`` the occluder's
    opacity (or a bool mask) in the written image, ``boxes`` ``(N, K, 4)`` xyxy pixels in the network's
    ``image_size`` input (an int for a square one, or ``(W, H)``); returns float64 ``(N, K)`` in ``[0, 1]``
    (:func:`~examples.common.synthetic.box_coverage`: partial pixels count by the area the box shares with them
    and by their opacity)."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    return box_coverage(alpha, boxes.to(torch.float64), image_size=size)  # type: ignore[arg-type]


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..n of a 1-d tensor in float64, tied values sharing the mean of the ranks they span (values are
    tied when exactly equal)."""
    if values.dim() != 1:
        raise ValueError(f"average_ranks expected a 1-d tensor, got shape {tuple(values.shape)}")
    x = values.to(torch.float64)
    order = torch.argsort(x, stable=True)
    ordered = x[order]
    ranks = torch.empty_like(x)
    start, n = 0, x.numel()
    while start < n:
        stop = start
        while stop + 1 < n and ordered[stop + 1] == ordered[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def spearman(a: Tensor, b: Tensor) -> float | None:
    """Spearman's rank correlation of two 1-d tensors: the Pearson correlation of their average ranks
    (:func:`average_ranks`), in float64; ``None`` when either has a single distinct value (no ordering)."""
    if a.shape != b.shape or a.dim() != 1:
        raise ValueError(f"spearman expected two 1-d tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    return None if den == 0 else float((ra * rb).sum()) / den


def mechanism_figures(coverage: Tensor, weights: Tensor, present: Tensor | None = None) -> dict[str, Any]:
    """Within-face comparison of occluder coverage and attention weight.

    Args:
        coverage: ``(N, K)`` occluder coverage of each non-whole-face region.
        weights: ``(N, K)`` their final (relation-attention) weights.
        present: ``(N, K)`` bool, the regions a face has (default all).

    Per face, over its present regions: the weight of its most covered region and of its least covered one
    (when several regions share the highest, or the lowest, coverage, the mean of their weights), and the
    Spearman correlation between coverage and weight (average ranks for ties; a face whose weights are all
    equal counts 0, no ordering). Faces whose regions all have the same coverage (among them faces with no
    occluder in any region, or with fewer than two regions) cannot be compared and are skipped.

    Returns:
        ``most_covered``, ``least_covered``, ``spearman`` (means over the compared faces; ``None`` if there is
        none), ``faces`` (compared), ``skipped``, and the mean coverage of the most and least covered regions
        (``coverage_most``, ``coverage_least``).
    """
    if coverage.shape != weights.shape or coverage.dim() != 2:
        raise ValueError(
            f"mechanism_figures expected coverage and weights of one shape (N, K), got "
            f"{tuple(coverage.shape)} and {tuple(weights.shape)}"
        )
    if present is None:
        present = torch.ones(coverage.shape, dtype=torch.bool)
    elif present.shape != coverage.shape:
        raise ValueError(
            f"mechanism_figures expected present of shape {tuple(coverage.shape)}, got {tuple(present.shape)}"
        )
    most, least, rho, cov_most, cov_least = [], [], [], [], []
    skipped = 0
    for c_row, w_row, p_row in zip(coverage.to(torch.float64), weights.to(torch.float64), present.bool(), strict=True):
        c, w = c_row[p_row], w_row[p_row]
        if c.numel() < 2 or bool((c == c[0]).all()):
            skipped += 1
            continue
        top, bottom = c == c.max(), c == c.min()
        most.append(float(w[top].mean()))
        least.append(float(w[bottom].mean()))
        cov_most.append(float(c.max()))
        cov_least.append(float(c.min()))
        r = spearman(c, w)
        rho.append(0.0 if r is None else r)

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return {
        "most_covered": mean(most),
        "least_covered": mean(least),
        "spearman": mean(rho),
        "faces": len(most),
        "skipped": skipped,
        "coverage_most": mean(cov_most),
        "coverage_least": mean(cov_least),
    }


@torch.no_grad()
def attention_on(model: nn.Module, images: Tensor, batch_size: int = 256) -> tuple[Tensor, Tensor, Tensor]:
    """A RAN model's region boxes ``(N, K, 4)``, final weights ``(N, K)`` and mask ``(N, K)`` on ``images``
    (uint8 or [0, 1] float), in evaluation mode."""
    model.eval()
    boxes, weights, mask = [], [], []
    for chunk in torch.split(images, batch_size):
        x = chunk.float() / 255 if chunk.dtype == torch.uint8 else chunk.float()
        out = model(x)
        boxes.append(out.regions.boxes.float())
        weights.append(out.relation_attention.weights.float())
        mask.append(out.regions.mask.bool())
    return torch.cat(boxes), torch.cat(weights), torch.cat(mask)


# ------------------------------------------------------------------------------------------------------------
# Why: the pixels each region's gate responds to


def gate_saliency(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """Which input pixels each region's self-attention gate responds to: for every face ``n`` and region ``i``
    the map :math:`S_{n,i}(y, x) = \\sum_c |\\partial \\mu_i / \\partial I_n(c, y, x)|`, float64
    ``(N, K, H, W)`` at the network's input size, the model in evaluation mode.

    For the paper's gates (:math:`\\mu_i = \\sigma(q^\\top F_i)`) this is :math:`\\mu_i (1 - \\mu_i)` times
    the gradient of :math:`q^\\top F_i`: one scale per region, so the shares :func:`field_figures` takes of it
    do not depend on how saturated the gate is. A region's map is zero where its gate does not look: outside
    its crop for the image-level RAN (up to the bilinear taps at the box edges); for the one-pass RAN,
    wherever the trunk's receptive field around the box does not reach. (With ``variant="authors"`` the gates
    are a softmax over the regions, so each map also carries the pixels of the others.)
    """
    model.eval()
    maps = []
    for chunk in torch.split(images, batch_size):
        x = (chunk.float() / 255 if chunk.dtype == torch.uint8 else chunk.float()).requires_grad_(True)
        with torch.enable_grad():
            gates = model(x).self_attention.gates  # (B, K); in eval mode each face's gates depend on it alone
            k = gates.shape[1]
            per_region = []
            for i in range(k):
                (grad,) = torch.autograd.grad(gates[:, i].sum(), x, retain_graph=i < k - 1)
                per_region.append(grad.abs().sum(1).double())
        maps.append(torch.stack(per_region, 1))
    if not maps:
        return torch.zeros(0, 0, *images.shape[-2:], dtype=torch.float64)
    return torch.cat(maps)


def box_weights(boxes: Tensor, height: int, width: int) -> Tensor:
    """``(..., 4)`` xyxy boxes -> ``(..., H, W)`` float64: the area each pixel ``[x, x + 1) x [y, y + 1)``
    shares with the box (1 inside, a fraction on the box's edges, 0 outside), the convention of
    :func:`~examples.common.synthetic.box_coverage`."""
    b = boxes.to(torch.float64)
    xs = torch.arange(width, dtype=torch.float64)
    ys = torch.arange(height, dtype=torch.float64)
    ox = (torch.minimum(b[..., 2:3], xs + 1) - torch.maximum(b[..., 0:1], xs)).clamp_min(0)  # (..., W)
    oy = (torch.minimum(b[..., 3:4], ys + 1) - torch.maximum(b[..., 1:2], ys)).clamp_min(0)  # (..., H)
    return oy[..., :, None] * ox[..., None, :]


def field_figures(
    saliency: Tensor, boxes: Tensor, alpha: Tensor, coverage: Tensor, present: Tensor | None = None
) -> dict[str, float | None]:
    """Where each region's gate looks, against its box and the occluder.

    Args:
        saliency: ``(N, K, H, W)`` from :func:`gate_saliency` (the network's input size).
        boxes: ``(N, K, 4)`` the regions' boxes in pixels of that input.
        alpha: ``(N, h, w)`` the occluder's opacity (resized bilinearly to ``(H, W)`` when it differs).
        coverage: ``(N, K)`` the boxes' occluder coverage (:func:`region_coverage`).
        present: ``(N, K)`` bool, the regions a face has (default all).

    A region's *field* is its saliency map normalised to sum 1; its *effective coverage* is the occluder's
    opacity averaged over its field (how covered the region is as its gate sees it). Regions whose map is
    all zero are left out; faces are compared as in :func:`mechanism_figures` (those whose boxes are all
    equally covered skipped).

    Returns:
        ``field_in_box``: the mean share of a region's field inside its own box; ``effective_most`` /
        ``effective_least``: the mean effective coverage of each face's most / least covered region (by box
        coverage). ``None`` where nothing could be compared.
    """
    n, k, height, width = saliency.shape
    if boxes.shape != (n, k, 4) or coverage.shape != (n, k):
        raise ValueError(
            f"field_figures expected boxes (N, K, 4) and coverage (N, K) for saliency "
            f"{tuple(saliency.shape)}, got {tuple(boxes.shape)} and {tuple(coverage.shape)}"
        )
    if alpha.dim() != 3 or alpha.shape[0] != n:
        raise ValueError(f"field_figures expected alpha of shape ({n}, h, w), got {tuple(alpha.shape)}")
    present = torch.ones(n, k, dtype=torch.bool) if present is None else present.bool()
    a = alpha.to(torch.float64)
    if a.shape[-2:] != (height, width):
        a = F.interpolate(a[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    s = saliency.to(torch.float64)
    total = s.sum((-2, -1))  # (N, K)
    usable = present & (total > 0)
    safe = total.clamp_min(torch.finfo(torch.float64).tiny)
    in_box = (s * box_weights(boxes, height, width)).sum((-2, -1)) / safe
    effective = (s * a[:, None]).sum((-2, -1)) / safe

    # by box coverage, the effective coverage of each face's most / least covered region (compared faces only)
    by_box = mechanism_figures(coverage, effective, usable)
    return {
        "field_in_box": float(in_box[usable].mean()) if bool(usable.any()) else None,
        "effective_most": by_box["most_covered"],
        "effective_least": by_box["least_covered"],
    }


def relative_weights(weights: Tensor, present: Tensor, reference: Tensor, reference_present: Tensor) -> Tensor:
    """Each region's weight divided by its mean weight over ``reference`` faces (the clean ones): ``weights``
    ``(N, K)`` with ``present`` ``(N, K)`` bool, ``reference`` ``(M, K)`` with ``reference_present``; float64
    ``(N, K)``, ``nan`` where a region is absent or never present (or of zero mean weight) in the reference.

    A model may weight some region types highly on every face (a prior over regions); if the occluders tend to
    cover those, the raw weights of covered regions look high though the occluder lowered them. Divided by the
    region's clean-face mean, 1 is "as usual", below 1 "weighted down on this face"."""
    if (
        weights.shape != present.shape
        or reference.shape != reference_present.shape
        or weights.dim() != 2
        or reference.dim() != 2
        or weights.shape[1] != reference.shape[1]
    ):
        raise ValueError(
            f"relative_weights expected weights and present (N, K), reference and reference_present "
            f"(M, K), got {tuple(weights.shape)}, {tuple(present.shape)}, {tuple(reference.shape)}, "
            f"{tuple(reference_present.shape)}"
        )
    ref_present = reference_present.bool()
    counts = ref_present.sum(0)
    prior = (reference.to(torch.float64) * ref_present).sum(0) / counts.clamp_min(1)
    usable = (counts > 0) & (prior > 0)
    out = weights.to(torch.float64) / torch.where(usable, prior, torch.ones_like(prior))
    return torch.where(present.bool() & usable, out, torch.full_like(out, math.nan))
