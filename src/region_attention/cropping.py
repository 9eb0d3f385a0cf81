"""The region cropper of RAN (paper Sec. III-C): settings only; the math is in :mod:`region_attention.functional`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from typing_extensions import override

from ._validation import (
    Box,
    check_bool,
    check_box_list,
    check_choice,
    check_images,
    check_landmarks,
    check_output_dtype,
    check_output_size,
    check_positive_int,
    check_radius,
    check_scale,
    check_strategy_options,
    check_unit_boxes,
    shape_str,
    warn_ignored_landmarks,
)
from .functional.boxes import (
    BOX_PRESETS,
    LANDMARK_BORDERS,
    LANDMARK_REGIONS,
    STRATEGIES,
    WHOLE_POSITIONS,
    RegionBoxes,
    region_boxes,
)
from .functional.crop import crop_regions

__all__ = ["STRATEGIES", "RegionCropper", "RegionCrops"]


class RegionCrops(NamedTuple):
    """What :class:`RegionCropper` returns.

    Attributes:
        crops: the regions resized to the output size, ``(B, K, C, h, w)``, contiguous; zeros where
            ``mask`` is ``False``. ``None`` in the output of
            :class:`~region_attention.FeatureRegionAttentionNetwork`, which pools its regions from the
            backbone's feature map and crops no pixels.
        boxes: each region's ``(x1, y1, x2, y2)`` in continuous pixel coordinates of the input image,
            ``(B, K, 4)``, at least float32; all zeros where ``mask`` is ``False``.
        mask: ``(B, K)`` bool, ``True`` = region present; pass it to the pools and the loss.
        whole_index: index of the whole face among the ``K`` regions (0 or -1), ``None`` without one;
            :class:`~region_attention.RegionAttentionLoss` reads it from the network's output.
    """

    crops: Tensor | None
    boxes: Tensor
    mask: Tensor
    whole_index: int | None = None


class RegionCropper(nn.Module):
    r"""Turn each face into the whole face :math:`I_0` and :math:`k` regions (Wang et al., TIP 2020, Sec. III-C).

    .. math::
        X = [I_0, I_1, \dots, I_k], \qquad I_i = \operatorname{resize}(\operatorname{crop}(I, b_i), h \times w)

    The whole batch is cropped in one call on the images' device by
    :func:`~region_attention.functional.crop_regions` (bilinear, differentiable w.r.t. the images), on
    the boxes of :meth:`boxes` (:func:`~region_attention.functional.region_boxes`). The
    number of regions ``K`` is fixed per cropper; regions that cannot exist (landmark strategy) are
    zero and ``False`` in ``mask``.

    Strategies (an option of one strategy given to another raises :class:`ValueError` naming the strategy it
    belongs to, as ``nn.Upsample`` refuses ``align_corners`` for a mode it does not apply to; ``None``, the
    default, takes the strategy's own default):

    - ``"fixed"``: the same boxes for every image: ``boxes="paper"`` (the paper's five regions),
      ``"authors-affectnet"`` (the seven of the authors' AffectNet code), or a ``(k, 4)`` tensor or
      sequence of normalised ``(x1, y1, x2, y2)`` boxes: fractions of the width and height in
      :math:`[0, 1]`. Boxes in pixels are refused (divide them by ``(W, H, W, H)``).
    - ``"random"``: ``num_regions`` boxes per image with side ratio drawn from ``scale`` of the face and a
      random position inside it (:func:`~region_attention.functional.random_boxes`), from ``generator``
      when given. In eval mode without a generator the boxes are drawn from a generator seeded with
      ``eval_seed`` (default 0) on every call, so evaluation is deterministic (the same batch position
      always gets the same boxes); pass a ``generator`` for fresh boxes in eval mode (test-time
      augmentation).
    - ``"landmarks"``: one square box per landmark, centred on it with half-side ``radius`` times the face
      side (the image's shorter side), with the border policy ``border``
      (:func:`~region_attention.functional.landmark_boxes`). Needs ``landmarks`` ``(B, 5, 2)`` or
      ``(B, 68, 2)`` in pixels; regions of missing (NaN) or out-of-image landmarks are masked.

    Args:
        output_size: ``int`` or ``(height, width)`` of every region (the backbone's input size).
        strategy: ``"fixed"`` (default), ``"random"`` or ``"landmarks"``.
        boxes: for ``"fixed"``: a preset name (default ``"paper"``) or normalised boxes in :math:`[0, 1]`.
        num_regions: for ``"random"``: regions per image (besides the whole face), default 5.
        scale: for ``"random"``: range of the side ratio, ``0 < min <= max <= 1``, default ``(0.7, 0.95)``.
        radius: for ``"landmarks"``: half-side of a region over the face side, ``> 0``, default 0.4.
        border: for ``"landmarks"``: ``"shift"`` (default), ``"clip"``, ``"pad"`` or ``"drop"``.
        include_whole: add the whole face as a region (the paper's :math:`I_0`).
        whole_position: ``"first"`` (the paper: ``whole_index`` 0) or ``"last"`` (the authors' code:
            ``whole_index`` -1).
        antialias: widen the interpolation filter when a region is shrunk; use it when the images are
            more than about twice the output size, where plain bilinear sampling skips pixels and aliases.
        eval_seed: for ``"random"``: the seed of the boxes in eval mode without a generator, default 0.
        dtype: dtype of the crops; default the images' floating dtype (float32 for uint8 images, which
            are divided by 255 like ``ToTensor``).

    Shapes:
        - images: :math:`(B, C, H, W)` (channels first: ``(B, H, W, C)`` data is refused), any floating
          dtype or uint8, any device
        - landmarks: :math:`(B, 5, 2)` or :math:`(B, 68, 2)`, ``(x, y)`` pixels, for ``"landmarks"`` (the
          other strategies warn when given landmarks, which they ignore)
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

    __call__: Callable[..., RegionCrops]  # so module(x) types as forward's output

    def __init__(
        self,
        output_size: int | tuple[int, int] = 224,
        *,
        strategy: str = "fixed",
        boxes: str | Tensor | Sequence[Sequence[float]] | None = None,
        num_regions: int | None = None,
        scale: tuple[float, float] | None = None,
        radius: float | None = None,
        border: str | None = None,
        include_whole: bool = True,
        whole_position: str = "first",
        antialias: bool = False,
        eval_seed: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.output_size = check_output_size(output_size, owner)
        self.strategy = check_choice(strategy, "strategy", STRATEGIES, owner)
        options = {"boxes": boxes, "num_regions": num_regions, "scale": scale, "eval_seed": eval_seed}
        check_strategy_options(strategy, {**options, "radius": radius, "border": border}, owner)
        random, landmark = strategy == "random", strategy == "landmarks"
        #: The options of the strategy (``None`` for the options of the other strategies).
        self.num_regions = None
        if random:
            self.num_regions = check_positive_int(5 if num_regions is None else num_regions, "num_regions", owner)
        self.scale = check_scale((0.7, 0.95) if scale is None else scale, owner) if random else None
        self.radius = check_radius(0.4 if radius is None else radius, owner) if landmark else None
        self.border = check_choice(border or "shift", "border", LANDMARK_BORDERS, owner) if landmark else None
        if eval_seed is not None and (isinstance(eval_seed, bool) or not isinstance(eval_seed, int)):
            raise TypeError(f"{owner} expected eval_seed to be an int or None, got {type(eval_seed).__name__}")
        self.eval_seed = (0 if eval_seed is None else eval_seed) if random else None
        self.include_whole = check_bool(include_whole, "include_whole", owner)
        self.whole_position = check_choice(whole_position, "whole_position", WHOLE_POSITIONS, owner)
        self.antialias = check_bool(antialias, "antialias", owner)
        self.dtype = None if dtype is None else check_output_dtype(dtype, None, owner)
        #: Index of the whole face among the regions (0 or -1), or ``None`` without ``include_whole``; it
        #: travels with the regions (``RegionCrops.whole_index``) to the loss.
        self.whole_index: int | None = (0 if whole_position == "first" else -1) if include_whole else None
        self.boxes_name: str | None = None
        #: The fixed boxes, normalised ``(x1, y1, x2, y2)`` in [0, 1] (empty for the other strategies).
        self.fixed_boxes: tuple[Box, ...] = ()
        if strategy == "fixed":
            boxes = "paper" if boxes is None else boxes
            if isinstance(boxes, str):
                self.boxes_name = check_choice(boxes, "boxes", tuple(BOX_PRESETS), owner)
                self.fixed_boxes = BOX_PRESETS[boxes]
            elif isinstance(boxes, Tensor):
                if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] == 0:
                    raise ValueError(
                        f"{owner} expected boxes of shape (k, 4) (normalised x1, y1, x2, y2), "
                        f"got {shape_str(boxes.shape)}"
                    )
                self.fixed_boxes = check_unit_boxes(check_box_list(boxes.detach().cpu().tolist(), owner), owner)
            else:
                self.fixed_boxes = check_unit_boxes(check_box_list(boxes, owner), owner)
        # The fixed boxes on each device they are used on, made once (no copy to the device per call).
        self._box_cache: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    @property
    def num_crops(self) -> int:
        """The number of regions per image besides the whole face."""
        if self.strategy == "fixed":
            return len(self.fixed_boxes)
        return self.num_regions if self.num_regions is not None else LANDMARK_REGIONS

    @property
    def K(self) -> int:
        """The number of regions per image, whole face included (the ``K`` of the outputs)."""
        return self.num_crops + int(self.include_whole)

    def _fixed_unit_boxes(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The normalised fixed boxes as a ``(k, 4)`` tensor on ``device``, cached per device and dtype."""
        if torch.compiler.is_compiling():
            return torch.tensor(self.fixed_boxes, dtype=dtype, device=device)
        key = (device, dtype)
        cached = self._box_cache.get(key)
        if cached is None:
            cached = self._box_cache[key] = torch.tensor(self.fixed_boxes, dtype=dtype, device=device)
        return cached

    def boxes(
        self, images: Tensor, landmarks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> RegionBoxes:
        """The boxes and mask of the regions of ``images``, without cropping a pixel.

        What :meth:`forward` crops, for models that pool features of the whole image over the boxes
        instead: one call to :func:`~region_attention.functional.region_boxes` with this cropper's
        settings. Only the shape, device and dtype of ``images`` are read (no values, no device sync).
        The boxes are drawn exactly as :meth:`forward` draws them: the same ``generator`` (or, for
        ``"random"`` in eval mode without one, a generator seeded with ``eval_seed``) gives the same boxes.

        Args:
            images: the face images ``(B, C, H, W)``.
            landmarks: ``(B, 5, 2)`` or ``(B, 68, 2)`` pixel landmarks; needed by ``"landmarks"``. The other
                strategies ignore them and warn when given some.
            generator: for ``"random"``: the generator to draw the boxes from (on its device).

        Returns:
            :class:`~region_attention.functional.RegionBoxes`: boxes ``(B, K, 4)`` in pixels of the images
            (for fixed boxes a view expanded over the batch) and mask ``(B, K)``, ``True`` = present.

        Example:
            >>> import torch
            >>> from region_attention import RegionCropper
            >>> cropper = RegionCropper(32, strategy="random").eval()
            >>> images = torch.rand(2, 3, 64, 48)
            >>> boxes, mask, whole_index = cropper.boxes(images)
            >>> boxes.shape, mask.shape
            (torch.Size([2, 6, 4]), torch.Size([2, 6]))
            >>> torch.equal(boxes, cropper(images).boxes)   # what forward crops
            True
        """
        owner = f"{type(self).__name__}(strategy={self.strategy!r})"
        images = check_images(images, owner)
        bsz, _, height, width = images.shape
        box_dtype = torch.promote_types(check_output_dtype(self.dtype, images, owner), torch.float32)
        if self.strategy == "landmarks":
            landmarks = check_landmarks(landmarks, bsz, images.device, owner)
        elif landmarks is not None:
            warn_ignored_landmarks(owner, stacklevel=2)
            landmarks = None
        if self.strategy != "random" and generator is not None:
            raise ValueError(f"{owner} got a generator, which only strategy='random' draws from; leave it out")
        if self.strategy == "random" and generator is None and not self.training and self.eval_seed is not None:
            generator = torch.Generator(device=images.device).manual_seed(self.eval_seed)
        fixed = self._fixed_unit_boxes(images.device, box_dtype) if self.strategy == "fixed" else None
        return region_boxes(
            self.strategy,
            bsz,
            (height, width),
            boxes=fixed,
            num_regions=self.num_regions,
            scale=self.scale,
            generator=generator,
            landmarks=landmarks,
            radius=self.radius,
            border=self.border,
            whole_position=self.whole_position if self.include_whole else None,
            device=images.device,
            dtype=box_dtype,
            check_boxes=False,  # checked in __init__
        )

    @override
    def forward(
        self, images: Tensor, landmarks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> RegionCrops:
        """Crop the regions of every image: :meth:`boxes`, then one call to
        :func:`~region_attention.functional.crop_regions`.

        Args:
            images: the face images.
            landmarks: ``(B, 5, 2)`` or ``(B, 68, 2)`` pixel landmarks; needed by ``"landmarks"``. The other
                strategies ignore them and warn when given some.
            generator: for ``"random"``: the generator to draw the boxes from (on its device).
        """
        regions = self.boxes(images, landmarks, generator)
        crops = self.crop(
            images,
            regions.boxes,
            # only landmark regions can be absent; without a mask shared boxes take the banded CPU path
            mask=regions.mask if self.strategy == "landmarks" else None,
            check_boxes=False,  # the cropper's own boxes: valid by construction, and no device sync
        )
        return RegionCrops(crops, regions.boxes.contiguous(), regions.mask, regions.whole_index)

    def crop(self, images: Tensor, boxes: Tensor, mask: Tensor | None = None, check_boxes: bool = True) -> Tensor:
        """Crop given ``boxes`` ``(B, K, 4)`` out of ``images`` with this cropper's ``output_size``,
        ``antialias`` and ``dtype``: :func:`~region_attention.functional.crop_regions` with its settings
        (``mask`` and ``check_boxes`` as there). The networks use it to crop regions given without crops."""
        return crop_regions(
            images,
            boxes,
            self.output_size,
            antialias=self.antialias,
            dtype=self.dtype,
            mask=mask,
            check_boxes=check_boxes,
        )

    @override
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
