"""The region cropper of RAN (paper Sec. III-C): settings only; the math is in :mod:`region_attention.functional`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ._validation import check_choice, check_positive_int, check_tensor, shape_str
from .functional import cropping as C

__all__ = ["STRATEGIES", "RegionCropper", "RegionCrops"]

#: How :class:`RegionCropper` makes its regions.
STRATEGIES = ("fixed", "random", "landmarks")
_WHOLE_POSITIONS = ("first", "last")


class RegionCrops(NamedTuple):
    """What :class:`RegionCropper` returns.

    Attributes:
        crops: the regions resized to the output size, ``(B, K, C, h, w)``, contiguous; zeros where
            ``mask`` is ``False``.
        boxes: each region's ``(x1, y1, x2, y2)`` in continuous pixel coordinates of the input image,
            ``(B, K, 4)``, at least float32; all zeros where ``mask`` is ``False``.
        mask: ``(B, K)`` bool, ``True`` = region present; pass it to the pools and the loss.
    """

    crops: Tensor
    boxes: Tensor
    mask: Tensor


class RegionCropper(nn.Module):
    r"""Turn each face into the whole face :math:`I_0` and :math:`k` regions (Wang et al., TIP 2020, Sec. III-C).

    .. math::
        X = [I_0, I_1, \dots, I_k], \qquad I_i = \operatorname{resize}(\operatorname{crop}(I, b_i), h \times w)

    The whole batch is cropped in one call on the images' device by
    :func:`~region_attention.functional.crop_regions` (bilinear, differentiable w.r.t. the images). The
    number of regions ``K`` is fixed per cropper; regions that cannot exist (landmark strategy) are
    zero and ``False`` in ``mask``.

    Strategies:

    - ``"fixed"``: the same boxes for every image: ``boxes="paper"`` (the paper's five regions),
      ``"authors-affectnet"`` (the seven of the authors' AffectNet code), or a ``(k, 4)`` tensor or
      sequence of normalised ``(x1, y1, x2, y2)`` boxes.
    - ``"random"``: ``num_regions`` boxes per image with side ratio drawn from ``scale`` of the face and a
      random position inside it (:func:`~region_attention.functional.random_boxes`), from ``generator``
      when given. In eval mode without a generator the boxes are drawn from a generator seeded with
      ``eval_seed`` on every call, so evaluation is deterministic (the same batch position always gets
      the same boxes); ``eval_seed=None`` keeps them random in eval mode too.
    - ``"landmarks"``: one square box per landmark, centred on it with half-side ``radius`` times the face
      side (the image's shorter side), with the border policy ``border``
      (:func:`~region_attention.functional.landmark_boxes`). Needs ``landmarks`` ``(B, 5, 2)`` or
      ``(B, 68, 2)`` in pixels; regions of missing (NaN) or out-of-image landmarks are masked.

    Args:
        output_size: ``int`` or ``(height, width)`` of every region (the backbone's input size).
        strategy: ``"fixed"`` (default), ``"random"`` or ``"landmarks"``.
        boxes: for ``"fixed"``: a preset name or normalised boxes.
        num_regions: for ``"random"``: regions per image (besides the whole face).
        scale: for ``"random"``: range of the side ratio, ``0 < min <= max <= 1``.
        radius: for ``"landmarks"``: half-side of a region over the face side, ``> 0``.
        border: for ``"landmarks"``: ``"shift"`` (default), ``"clip"``, ``"pad"`` or ``"drop"``.
        include_whole: add the whole face as a region (the paper's :math:`I_0`).
        whole_position: ``"first"`` (the paper: ``whole_index`` 0) or ``"last"`` (the authors' code:
            ``whole_index`` -1).
        antialias: widen the interpolation filter when a region is shrunk; use it when the images are
            more than about twice the output size, where plain bilinear sampling skips pixels and aliases.
        eval_seed: for ``"random"`` in eval mode without a generator; ``None`` draws fresh boxes.
        dtype: dtype of the crops; default the images' floating dtype (float32 for uint8 images, which
            are divided by 255 like ``ToTensor``).

    Shapes:
        - images: :math:`(B, C, H, W)`, any floating dtype or uint8, any device
        - landmarks: :math:`(B, 5, 2)` or :math:`(B, 68, 2)`, ``(x, y)`` pixels, for ``"landmarks"``
        - output: :class:`RegionCrops` with crops :math:`(B, K, C, h, w)`, boxes :math:`(B, K, 4)`,
          mask :math:`(B, K)`, where :math:`K` is ``cropper.K``

    Convention:
        Boxes are xyxy in continuous pixel coordinates of the input, pixel :math:`i` spanning
        :math:`[i, i + 1)`; normalised boxes are fractions of the width and height. The whole face is the
        box ``(0, 0, W, H)`` at index ``cropper.whole_index`` (0 by default, -1 with
        ``whole_position="last"``, ``None`` without ``include_whole``).

    Example:
        >>> import torch
        >>> from region_attention import RegionCropper
        >>> cropper = RegionCropper(112)
        >>> cropper
        RegionCropper(output_size=(112, 112), strategy='fixed', boxes='paper', whole_index=0)
        >>> out = cropper(torch.rand(4, 3, 224, 224))
        >>> out.crops.shape, out.mask.shape, cropper.K, cropper.whole_index
        (torch.Size([4, 6, 3, 112, 112]), torch.Size([4, 6]), 6, 0)
        >>> out.boxes[0]
        tensor([[  0.0000,   0.0000, 224.0000, 224.0000],
                [  0.0000,   0.0000, 168.0000, 168.0000],
                [ 56.0000,   0.0000, 224.0000, 168.0000],
                [ 28.0000,  56.0000, 196.0000, 224.0000],
                [ 11.2000,  11.2000, 212.8000, 212.8000],
                [ 16.8000,  16.8000, 207.2000, 207.2000]])
    """

    def __init__(
        self,
        output_size: int | tuple[int, int] = 224,
        *,
        strategy: str = "fixed",
        boxes: str | Tensor | Sequence[Sequence[float]] = "paper",
        num_regions: int = 5,
        scale: tuple[float, float] = (0.7, 0.95),
        radius: float = 0.4,
        border: str = "shift",
        include_whole: bool = True,
        whole_position: str = "first",
        antialias: bool = False,
        eval_seed: int | None = 0,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.output_size = C.check_output_size(output_size, owner)
        self.strategy = check_choice(strategy, "strategy", STRATEGIES, owner)
        self.num_regions = check_positive_int(num_regions, "num_regions", owner)
        self.scale = C.check_scale(scale, owner)
        self.radius = C.check_radius(radius, owner)
        self.border = check_choice(border, "border", C.LANDMARK_BORDERS, owner)
        for name, flag in (("include_whole", include_whole), ("antialias", antialias)):
            if not isinstance(flag, bool):
                raise TypeError(f"{owner} expected {name} to be a bool, got {type(flag).__name__}")
        self.include_whole = include_whole
        self.whole_position = check_choice(whole_position, "whole_position", _WHOLE_POSITIONS, owner)
        self.antialias = antialias
        if eval_seed is not None and (isinstance(eval_seed, bool) or not isinstance(eval_seed, int)):
            raise TypeError(f"{owner} expected eval_seed to be an int or None, got {type(eval_seed).__name__}")
        self.eval_seed = eval_seed
        self.dtype = None if dtype is None else C.check_output_dtype(dtype, None, owner)
        #: Index of the whole face among the regions (0 or -1), or ``None`` without ``include_whole``;
        #: pass it to :class:`~region_attention.RegionBiasedLoss`.
        self.whole_index: int | None = (0 if whole_position == "first" else -1) if include_whole else None
        self.boxes_name: str | None = None
        self.fixed_boxes: tuple[C.Box, ...] = ()
        if strategy == "fixed":
            if isinstance(boxes, str):
                self.boxes_name = check_choice(boxes, "boxes", tuple(C.BOX_PRESETS), owner)
                self.fixed_boxes = C.BOX_PRESETS[boxes]
            elif isinstance(boxes, Tensor):
                if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] == 0:
                    raise ValueError(
                        f"{owner} expected boxes of shape (k, 4) (normalised x1, y1, x2, y2), "
                        f"got {shape_str(boxes.shape)}"
                    )
                self.fixed_boxes = C._host_box_list(boxes.detach().cpu().tolist(), owner)
            else:
                self.fixed_boxes = C._host_box_list(boxes, owner)
        self._box_cache: dict[tuple[torch.device, torch.dtype, int, int], Tensor] = {}

    @property
    def num_crops(self) -> int:
        """The number of regions per image besides the whole face."""
        if self.strategy == "fixed":
            return len(self.fixed_boxes)
        return self.num_regions if self.strategy == "random" else 5

    @property
    def K(self) -> int:
        """The number of regions per image, whole face included (the ``K`` of the outputs)."""
        return self.num_crops + int(self.include_whole)

    def _with_whole(self, crops_boxes: list[C.Box], width: int, height: int) -> list[C.Box]:
        if not self.include_whole:
            return crops_boxes
        whole = (0.0, 0.0, float(width), float(height))
        return [whole, *crops_boxes] if self.whole_position == "first" else [*crops_boxes, whole]

    def _fixed_pixel_boxes(self, height: int, width: int) -> list[C.Box]:
        boxes = [(x1 * width, y1 * height, x2 * width, y2 * height) for x1, y1, x2, y2 in self.fixed_boxes]
        return self._with_whole(boxes, width, height)

    def _boxes_tensor(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The fixed pixel boxes on ``device``, made once per device and size (no transfer per call)."""
        key = (device, dtype, height, width)
        cached = None if torch.compiler.is_compiling() else self._box_cache.get(key)
        if cached is None:
            cached = torch.tensor(self._fixed_pixel_boxes(height, width), dtype=dtype, device=device)
            if not torch.compiler.is_compiling():
                if len(self._box_cache) >= 16:  # images of ever new sizes: keep the cache small
                    self._box_cache.clear()
                self._box_cache[key] = cached
        return cached

    def _add_whole(self, boxes: Tensor, mask: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        if not self.include_whole:
            return boxes, mask
        whole = torch.zeros_like(boxes[:, :1])
        whole[..., 2] = width
        whole[..., 3] = height
        present = torch.ones_like(mask[:, :1])
        if self.whole_position == "first":
            return torch.cat([whole, boxes], dim=1), torch.cat([present, mask], dim=1)
        return torch.cat([boxes, whole], dim=1), torch.cat([mask, present], dim=1)

    def forward(
        self, images: Tensor, landmarks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> RegionCrops:
        """Crop the regions of every image.

        Args:
            images: the face images.
            landmarks: ``(B, 5, 2)`` or ``(B, 68, 2)`` pixel landmarks; needed by ``"landmarks"``, ignored
                by the other strategies.
            generator: for ``"random"``: the generator to draw the boxes from (on its device).
        """
        owner = f"{type(self).__name__}(strategy={self.strategy!r})"
        images = C.check_images(images, owner)
        bsz, _, height, width = images.shape
        dtype = C.check_output_dtype(self.dtype, images, owner)
        box_dtype = torch.promote_types(dtype, torch.float32)
        if self.strategy == "fixed":
            shared = self._boxes_tensor(height, width, images.device, box_dtype)
            if C._fast_path_ok(images):
                pixel = tuple(self._fixed_pixel_boxes(height, width))
                crops = C._crop_host_boxes(images, pixel, self.output_size, self.antialias, dtype, True)
            else:
                crops = C._crop(images, shared, self.output_size, self.antialias, dtype, True)
            boxes = shared.expand(bsz, -1, -1).contiguous()
            mask = torch.ones(bsz, self.K, dtype=torch.bool, device=images.device)
            return RegionCrops(crops, boxes, mask)
        if self.strategy == "random":
            if generator is None and not self.training and self.eval_seed is not None:
                generator = torch.Generator(device=images.device).manual_seed(self.eval_seed)
            unit = C.random_boxes(
                bsz, self.num_regions, scale=self.scale, generator=generator, device=images.device, dtype=box_dtype
            )
            boxes = torch.stack(
                (unit[..., 0] * width, unit[..., 1] * height, unit[..., 2] * width, unit[..., 3] * height), dim=-1
            )
            mask = torch.ones(bsz, self.num_regions, dtype=torch.bool, device=images.device)
        else:
            if landmarks is None:
                raise ValueError(f"{owner} expected landmarks of shape (B, 5, 2) or (B, 68, 2) in pixels, got None")
            landmarks = check_tensor(landmarks, "landmarks", owner)
            if landmarks.dim() != 3 or landmarks.shape[0] != bsz or landmarks.shape[1:] not in ((5, 2), (68, 2)):
                raise ValueError(
                    f"{owner} expected landmarks of shape ({bsz}, 5, 2) or ({bsz}, 68, 2) in pixels, "
                    f"got {shape_str(landmarks.shape)}"
                )
            if landmarks.device != images.device:
                raise ValueError(
                    f"{owner} expected landmarks on {images.device} like the images, got {landmarks.device}"
                )
            boxes, mask = C.landmark_boxes(landmarks, (height, width), radius=self.radius, border=self.border)
            boxes = boxes.to(box_dtype)
        boxes, mask = self._add_whole(boxes, mask, height, width)
        present = mask if self.strategy == "landmarks" else None  # zero the regions that do not exist
        crops = C._crop(images, boxes, self.output_size, self.antialias, dtype, True, present)
        return RegionCrops(crops, boxes, mask)

    def extra_repr(self) -> str:
        parts = [f"output_size={self.output_size}", f"strategy={self.strategy!r}"]
        if self.strategy == "fixed":
            parts.append(f"boxes={self.boxes_name!r}" if self.boxes_name else f"boxes=<{len(self.fixed_boxes)} boxes>")
        elif self.strategy == "random":
            parts += [f"num_regions={self.num_regions}", f"scale={self.scale}", f"eval_seed={self.eval_seed}"]
        else:
            parts += [f"radius={self.radius}", f"border={self.border!r}"]
        parts.append(f"whole_index={self.whole_index}")
        if self.antialias:
            parts.append("antialias=True")
        if self.dtype is not None:
            parts.append(f"dtype={self.dtype}")
        return ", ".join(parts)
