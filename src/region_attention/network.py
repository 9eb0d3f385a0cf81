"""The whole Region Attention Network (paper Fig. 1): cropper, shared backbone, two pools, classifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn
from typing_extensions import override

from ._feature_dim import feature_dim_of, head_feature_dim, image_channels
from ._validation import (
    check_bool,
    check_choice,
    check_dropout,
    check_images,
    check_positive_int,
    check_tensor,
    shape_str,
)
from .cropping import RegionCropper, RegionCrops
from .functional.boxes import RegionBoxes
from .functional.pooling import VARIANTS, RelationAttentionOutput, SelfAttentionOutput
from .pooling import RelationAttentionPool, SelfAttentionPool
from .region_align import RegionAlign

__all__ = ["FeatureRegionAttentionNetwork", "RANOutput", "RegionAttentionNetwork"]

REGION_BATCHING = ("joint", "per_region")


class RANOutput(NamedTuple):
    """What :class:`RegionAttentionNetwork` and :class:`FeatureRegionAttentionNetwork` return.

    Attributes:
        logits: ``(B, num_classes)``, the classifier on :math:`P_{RAN}`.
        self_attention: the :class:`~region_attention.SelfAttentionPool` output (pooled, weights, gates).
        relation_attention: the :class:`~region_attention.RelationAttentionPool` output.
        regions: the :class:`~region_attention.RegionCrops` of the regions (crops, boxes, mask and
            ``whole_index``, which :class:`~region_attention.RegionAttentionLoss` reads). From
            :class:`FeatureRegionAttentionNetwork`, which crops no pixels, ``crops`` is ``None``.
    """

    logits: Tensor
    self_attention: SelfAttentionOutput
    relation_attention: RelationAttentionOutput
    regions: RegionCrops


def _check_head_arguments(
    owner: str,
    feature_dim: object,
    num_classes: object,
    variant: object,
    dropout: object,
    attention_bias: bool | None,
) -> bool:
    """Validate the settings of the attention head; return whether the queries have a bias."""
    check_positive_int(feature_dim, "feature_dim", owner)
    check_positive_int(num_classes, "num_classes", owner)
    check_choice(variant, "variant", VARIANTS, owner)
    check_dropout(dropout, owner)
    if attention_bias is not None:
        check_bool(attention_bias, "attention_bias", owner)
    return (variant == "authors") if attention_bias is None else attention_bias


def _exporting() -> bool:
    """Is ``torch.export`` (and so ``torch.onnx.export(dynamo=True)``) tracing the model? (torch >= 2.6 tells.)"""
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting()) if is_exporting is not None else False


def _as_crops(regions: object, owner: str) -> RegionCrops:
    """``regions`` as :class:`RegionCrops`: a :class:`RegionBoxes` gets ``crops=None``."""
    if isinstance(regions, RegionCrops):
        return regions
    if isinstance(regions, RegionBoxes):
        return RegionCrops(None, regions.boxes, regions.mask, regions.whole_index)
    raise TypeError(
        f"{owner} expected regions to be RegionCrops or RegionBoxes (e.g. from model.regions(images) or "
        f"model.boxes(images)), got {type(regions).__name__}"
    )


class _RegionAttentionHead(nn.Module):
    """What both networks share: the cropper's regions, the two pools, dropout, the classifier, and the
    methods that run them, so that code written against one network runs against the other.

    A subclass supplies :meth:`regions` (what :meth:`forward` computes from the images) and :meth:`embed`
    (region features from regions).
    """

    __call__: Callable[..., RANOutput]  # so module(x) types as forward's output
    feature_dim: int
    channels_last: bool
    cropper: RegionCropper
    self_pool: SelfAttentionPool
    relation_pool: RelationAttentionPool
    dropout: nn.Dropout
    classifier: nn.Linear

    def _build_head(self, feature_dim: int, num_classes: int, variant: str, dropout: float, bias: bool) -> None:
        self.self_pool = SelfAttentionPool(feature_dim, bias=bias, variant=variant)
        self.relation_pool = RelationAttentionPool(feature_dim, bias=bias, variant=variant)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * feature_dim, num_classes)

    @property
    def whole_index(self) -> int | None:
        """Index of the whole face among the regions (0 or -1; ``None`` without one). The outputs carry it too
        (``output.regions.whole_index``), and :class:`~region_attention.RegionAttentionLoss` reads it there."""
        return self.cropper.whole_index

    def boxes(
        self, images: Tensor, landmarks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> RegionBoxes:
        """The cropper's :class:`~region_attention.functional.RegionBoxes` (boxes, mask, whole_index) for
        ``images``, without cropping a pixel: ``self.cropper.boxes(images, landmarks, generator)``."""
        return self.cropper.boxes(images, landmarks, generator)

    def regions(
        self, images: Tensor, landmarks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> RegionCrops:
        """The regions :meth:`forward` runs on, as :class:`~region_attention.RegionCrops`."""
        raise NotImplementedError

    def embed(
        self, regions: RegionCrops | RegionBoxes, images: Tensor | None = None, *, check_boxes: bool = True
    ) -> Tensor:
        """The region features ``(B, K, D)`` of ``regions``."""
        raise NotImplementedError

    def forward_features(self, feats: Tensor, regions: RegionCrops | RegionBoxes) -> RANOutput:
        """Everything after the region features ``(B, K, D)``: both pools on ``regions.mask``, the
        classifier, and the :class:`RANOutput` (``regions`` is passed through, as :class:`RegionCrops`)."""
        regions = _as_crops(regions, f"{type(self).__name__}.forward_features")
        mask = regions.mask
        s = self.self_pool(feats, mask)
        r = self.relation_pool(feats, s.pooled, s.gates, mask)
        logits = self.classifier(self.dropout(r.pooled))
        if regions.whole_index is not None and _exporting():
            # an exported graph's outputs are tensors: the index is a constant of the model (model.whole_index)
            regions = regions._replace(whole_index=None)
        return RANOutput(logits, s, r, regions)

    def forward_regions(
        self, regions: RegionCrops | RegionBoxes, images: Tensor | None = None, *, check_boxes: bool = True
    ) -> RANOutput:
        """Everything after the regions: :meth:`embed`, then :meth:`forward_features`. Use it with regions you
        computed yourself (:class:`RegionCrops` or :class:`~region_attention.functional.RegionBoxes`, with
        ``whole_index`` set for the loss); ``images`` and ``check_boxes`` as :meth:`embed` takes them."""
        regions = _as_crops(regions, f"{type(self).__name__}.forward_regions")
        return self.forward_features(self.embed(regions, images, check_boxes=check_boxes), regions)

    @override
    def forward(
        self, images: Tensor, landmarks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> RANOutput:
        """The regions of ``images`` ``(B, C, H, W)`` (:meth:`regions`, with ``landmarks`` ``(B, L, 2)`` for a
        landmark cropper and an optional ``generator`` for random regions), then :meth:`forward_regions`."""
        # the cropper's own boxes are valid by construction: no check, so no device synchronisation
        return self.forward_regions(self.regions(images, landmarks, generator), images, check_boxes=False)

    def _check_dtype(self, value: Tensor, name: str) -> None:
        """Floating inputs in the parameters' dtype (autocast aside), as ``nn.Linear`` needs them."""
        expected = self.classifier.weight.dtype
        if value.is_floating_point() and value.dtype != expected and not torch.is_autocast_enabled(value.device.type):
            raise TypeError(
                f"{type(self).__name__} expected {name} of dtype {expected} like its parameters (or uint8 images), "
                f"got {value.dtype}; convert the images (images.to({expected})) or the model (model.to({value.dtype}))"
            )

    def _features(self, net: nn.Module, inputs: Tensor, what: str) -> Tensor:
        """``net`` on ``inputs`` ``(N, ...)``: ``(N, feature_dim)`` features (a trailing ``(1, 1)`` is dropped)."""
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        feats: Tensor = net(inputs)
        if feats.dim() == 4 and feats.shape[-2:] == (1, 1):
            feats = feats.flatten(1)
        if feats.dim() != 2 or feats.shape[1] != self.feature_dim:
            raise ValueError(
                f"{type(self).__name__}(feature_dim={self.feature_dim}) expected the {what} to return "
                f"(N, {self.feature_dim}) features for {shape_str(inputs.shape)} inputs, got {shape_str(feats.shape)}"
            )
        return feats


class RegionAttentionNetwork(_RegionAttentionHead):
    r"""Region Attention Network (Wang et al., TIP 2020, Fig. 1) around any backbone.

    .. math::
        F_i = r(I_i; \theta),\quad
        F_m = \frac{\sum_i \mu_i F_i}{\sum_i \mu_i},\quad
        P_{RAN} = \frac{\sum_i \mu_i\nu_i [F_i : F_m]}{\sum_i \mu_i\nu_i},\quad
        \text{logits} = W P_{RAN} + b

    The cropper turns each image into the whole face and its regions on the images' device
    (:meth:`regions`); one shared backbone embeds every region (:meth:`embed`);
    :class:`~region_attention.SelfAttentionPool` and :class:`~region_attention.RelationAttentionPool`
    aggregate the features; a linear classifier reads :math:`P_{RAN}` (``2 * feature_dim`` features). Train it with
    :class:`~region_attention.RegionAttentionLoss` (cross-entropy + region biased loss, 1:1).

    It shares its methods with :class:`FeatureRegionAttentionNetwork`: :meth:`boxes` (the regions'
    :class:`~region_attention.functional.RegionBoxes`), :meth:`regions`, :meth:`embed` (region features),
    :meth:`forward_regions` (from regions you computed yourself: crops, or boxes cropped from ``images``),
    :meth:`forward_features` and ``whole_index``.

    Args:
        backbone: any module mapping ``(N, C, h, w)`` images to ``(N, feature_dim)`` features (a trailing
            ``(1, 1)`` spatial size is accepted), e.g. :func:`region_attention.backbones.resnet18`.
        feature_dim: :math:`D`, the size of the backbone's features; ``None`` (default) reads it from the
            backbone's ``head_hidden_size`` or ``num_features`` (timm's convention; not for a module with a
            classifier, ``num_classes > 0``) or else measures it with one forward pass of a zero batch of
            ``cropper.output_size`` images in eval mode without gradients, which changes no parameter, buffer or
            train/eval mode.
        num_classes: number of classes of the classifier.
        cropper: a :class:`~region_attention.RegionCropper`; ``None`` is the paper's default, the whole
            face plus the five fixed regions, at 224 x 224.
        variant: ``"paper"`` (default) or ``"authors"``. ``"authors"`` reproduces the released model:
            softmax over the sigmoid gates in both pools and a bias on both queries. Combine it with a
            cropper that puts the whole face last and ``RegionAttentionLoss(margin=0.1)`` (the whole face's
            index travels with the output's regions).
        dropout: dropout probability before the classifier (0 in the paper).
        region_batching: ``"joint"`` (default) makes one backbone call over all ``B * K`` region images, so
            in training BatchNorm normalises all region types together; ``"per_region"`` calls the backbone
            once per region index over the whole batch, as the authors' code does, so BatchNorm keeps
            separate batch statistics per region type. In eval mode both compute the same features and
            the single joint call is always used. ``"joint"`` is the default: on GPUs, where real training
            runs, it is about twice as fast; on CPUs ``"per_region"`` measured faster (see
            :doc:`benchmarks`). Pick ``"per_region"`` for CPU training or the authors' BatchNorm.
        attention_bias: add a bias to both attention queries; ``None`` means "as the variant does"
            (no bias for ``"paper"``, bias for ``"authors"``).
        channels_last: feed the backbone channels-last region batches (faster convolutions on GPUs with
            mixed precision, and on CPUs for small CNNs, whose NCHW max pooling and convolution backward are
            slow: the demo's training steps run 1.3 to 1.5 times as fast, see :doc:`benchmarks`); convert the
            backbone itself with ``.to(memory_format=torch.channels_last)``.

    Shapes:
        - images: :math:`(B, C, H, W)`; landmarks (for a landmark cropper): :math:`(B, L, 2)` pixels
        - output: :class:`RANOutput` with ``logits`` :math:`(B, \text{num_classes})`

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from region_attention import RegionAttentionNetwork, RegionCropper
        >>> backbone = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(),
        ...                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> model = RegionAttentionNetwork(backbone, 16, num_classes=8,
        ...                                cropper=RegionCropper(32))
        >>> out = model(torch.rand(2, 3, 64, 64))
        >>> out.logits.shape, out.self_attention.weights.shape
        (torch.Size([2, 8]), torch.Size([2, 6]))
        >>> out.regions.crops.shape
        torch.Size([2, 6, 3, 32, 32])
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int | None = None,
        num_classes: int | None = None,
        *,
        cropper: RegionCropper | None = None,
        variant: str = "paper",
        dropout: float = 0.0,
        region_batching: str = "joint",
        attention_bias: bool | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"{owner} expected backbone to be an nn.Module, got {type(backbone).__name__}")
        if cropper is not None and not isinstance(cropper, RegionCropper):
            raise TypeError(f"{owner} expected cropper to be a RegionCropper or None, got {type(cropper).__name__}")
        if num_classes is None:
            raise TypeError(f"{owner} missing the required argument num_classes")
        if feature_dim is None:
            size = (cropper or RegionCropper(224)).output_size
            feature_dim = feature_dim_of(backbone, (2, image_channels(backbone), *size), owner, "backbone")
        bias = _check_head_arguments(owner, feature_dim, num_classes, variant, dropout, attention_bias)
        check_choice(region_batching, "region_batching", REGION_BATCHING, owner)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.variant = variant
        self.region_batching = region_batching
        self.channels_last = bool(channels_last)
        self.cropper = cropper if cropper is not None else RegionCropper(224)
        self.backbone = backbone
        self._build_head(feature_dim, num_classes, variant, dropout, bias)

    @override
    def extra_repr(self) -> str:
        return (
            f"feature_dim={self.feature_dim}, num_classes={self.num_classes}, variant={self.variant!r}, "
            f"region_batching={self.region_batching!r}"
        )

    @override
    def regions(
        self, images: Tensor, landmarks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> RegionCrops:
        """The cropper's :class:`~region_attention.RegionCrops` of ``images``: crops, boxes, mask, whole_index."""
        return self.cropper(images, landmarks=landmarks, generator=generator)

    @override
    def embed(
        self, regions: RegionCrops | RegionBoxes, images: Tensor | None = None, *, check_boxes: bool = True
    ) -> Tensor:
        """The backbone's features ``(B, K, D)`` of the region images: ``regions.crops`` ``(B, K, C, h, w)``,
        or, for regions without crops (:class:`~region_attention.functional.RegionBoxes`), the boxes cropped
        out of ``images`` with the cropper's ``output_size``, ``antialias`` and ``dtype`` (``check_boxes`` as
        for :func:`~region_attention.functional.crop_regions`; regions where ``regions.mask`` is ``False``
        are zeros and not checked)."""
        owner = f"{type(self).__name__}.embed"
        regions = _as_crops(regions, owner)
        crops = regions.crops
        if crops is None:
            if images is None:
                raise ValueError(f"{owner} expected images to crop the regions from (regions.crops is None)")
            crops = self.cropper.crop(images, regions.boxes, mask=regions.mask, check_boxes=check_boxes)
        crops = check_tensor(crops, "regions.crops", owner)
        if crops.dim() != 5:
            raise ValueError(f"{owner} expected regions.crops of shape (B, K, C, h, w), got {shape_str(crops.shape)}")
        self._check_dtype(crops, "region crops (of the images)")
        k = crops.shape[1]
        # In eval mode BatchNorm uses its running statistics, so both modes compute the same features: take the
        # single call, which measured faster for inference on CPU and GPU alike.
        if self.region_batching == "joint" or not self.training:
            feats = self._features(self.backbone, rearrange(crops, "b k c h w -> (b k) c h w"), "backbone")
            return rearrange(feats, "(b k) d -> b k d", k=k)
        return torch.stack([self._features(self.backbone, crops[:, i], "backbone") for i in range(k)], dim=1)


class FeatureRegionAttentionNetwork(_RegionAttentionHead):
    r"""One-pass Region Attention Network: the regions are pooled from one feature map of the whole face.

    .. math::
        M = t(I),\quad
        F_i = g\big(\operatorname{RoIAlign}(M, b_i)\big),\quad
        F_m = \frac{\sum_i \mu_i F_i}{\sum_i \mu_i},\quad
        P_{RAN} = \frac{\sum_i \mu_i\nu_i [F_i : F_m]}{\sum_i \mu_i\nu_i}

    The trunk :math:`t` runs once per face; each region box :math:`b_i` of the cropper (the whole face and
    the fixed, random or landmark regions, exactly as :class:`RegionAttentionNetwork` gets them) is pooled
    from its feature map into ``roi_size x roi_size`` cells by :func:`~region_attention.functional.region_align`,
    and the head :math:`g` turns every pooled region into a ``feature_dim`` feature. From there on it is
    the same model as :class:`RegionAttentionNetwork`, with the same code: the two attention pools,
    dropout, the classifier on :math:`P_{RAN}`, the variants, :class:`RANOutput`, and
    :class:`~region_attention.RegionAttentionLoss` to train it. A batch-1 forward costs about one backbone
    pass instead of ``K``; what this gives up is in :doc:`method`.

    Args:
        trunk: maps ``(B, C, H, W)`` images to a feature map ``(B, C', h, w)``, e.g. the first part of
            :func:`region_attention.backbones.resnet18_split`.
        head: maps pooled regions ``(N, C', roi_size, roi_size)`` to ``(N, feature_dim)`` features (a
            trailing ``(1, 1)`` spatial size is accepted), e.g. the second part of ``resnet18_split``.
        feature_dim: :math:`D`, the size of the head's features; ``None`` (default) reads the head's
            ``num_features`` (set by :func:`~region_attention.backbones.timm_split`) or else measures it with one
            forward pass of the trunk (a zero image of ``cropper.output_size``) and of the head, in eval mode without
            gradients, changing no parameter, buffer or train/eval mode.
        num_classes: number of classes of the classifier.
        cropper: a :class:`~region_attention.RegionCropper` that supplies the boxes and the mask (its
            ``output_size`` and ``antialias`` are not used: nothing is cropped); ``None`` is the paper's
            whole face plus five fixed regions.
        roi_size: ``int`` or ``(height, width)``, the cells per pooled region.
        sampling_ratio: bilinear samples per cell along each axis (``>= 1``), as in RoIAlign.
        variant: ``"paper"`` (default) or ``"authors"``, as for :class:`RegionAttentionNetwork`.
        dropout: dropout probability before the classifier (0 in the paper).
        attention_bias: add a bias to both attention queries; ``None`` means "as the variant does".
        channels_last: feed the trunk and the head channels-last inputs (for GPUs with mixed precision, and
            CPUs, as for :class:`RegionAttentionNetwork`; convert the modules themselves with
            ``.to(memory_format=torch.channels_last)``).

    Shapes:
        - images: :math:`(B, C, H, W)` floating or uint8 (divided by 255); landmarks (for a landmark
          cropper): :math:`(B, L, 2)` pixels
        - output: :class:`RANOutput` with ``logits`` :math:`(B, \text{num_classes})` and ``regions``
          holding ``boxes`` :math:`(B, K, 4)` and ``mask`` :math:`(B, K)`; ``regions.crops`` is ``None``

    Example:
        >>> import torch
        >>> from region_attention import FeatureRegionAttentionNetwork
        >>> from region_attention.backbones import resnet18_split
        >>> trunk, head = resnet18_split(at="layer3")
        >>> model = FeatureRegionAttentionNetwork(trunk, head, 512, num_classes=8)
        >>> out = model(torch.rand(2, 3, 224, 224))
        >>> out.logits.shape, out.self_attention.weights.shape
        (torch.Size([2, 8]), torch.Size([2, 6]))
        >>> out.regions.boxes.shape, out.regions.crops is None
        (torch.Size([2, 6, 4]), True)
    """

    def __init__(
        self,
        trunk: nn.Module,
        head: nn.Module,
        feature_dim: int | None = None,
        num_classes: int | None = None,
        *,
        cropper: RegionCropper | None = None,
        roi_size: int | tuple[int, int] = 7,
        sampling_ratio: int = 2,
        variant: str = "paper",
        dropout: float = 0.0,
        attention_bias: bool | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        for name, module in (("trunk", trunk), ("head", head)):
            if not isinstance(module, nn.Module):
                raise TypeError(f"{owner} expected {name} to be an nn.Module, got {type(module).__name__}")
        if cropper is not None and not isinstance(cropper, RegionCropper):
            raise TypeError(f"{owner} expected cropper to be a RegionCropper or None, got {type(cropper).__name__}")
        if num_classes is None:
            raise TypeError(f"{owner} missing the required argument num_classes")
        self.cropper = cropper if cropper is not None else RegionCropper(224)
        self.align = RegionAlign(roi_size, sampling_ratio)
        if feature_dim is None:
            feature_dim = head_feature_dim(trunk, head, self.cropper.output_size, self.align.output_size, owner)
        bias = _check_head_arguments(owner, feature_dim, num_classes, variant, dropout, attention_bias)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.variant = variant
        self.channels_last = bool(channels_last)
        self.trunk = trunk
        self.head = head
        self._build_head(feature_dim, num_classes, variant, dropout, bias)

    @property
    def roi_size(self) -> tuple[int, int]:
        """``(height, width)`` cells of every pooled region."""
        return self.align.output_size

    @property
    def sampling_ratio(self) -> int:
        """Bilinear samples per cell along each axis."""
        return self.align.sampling_ratio

    @override
    def extra_repr(self) -> str:
        return (
            f"feature_dim={self.feature_dim}, num_classes={self.num_classes}, variant={self.variant!r}, "
            f"roi_size={self.roi_size}, sampling_ratio={self.sampling_ratio}"
        )

    @override
    def regions(
        self, images: Tensor, landmarks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> RegionCrops:
        """The cropper's regions of ``images`` without crops: :class:`~region_attention.RegionCrops` with
        ``crops=None``, the boxes, the mask and ``whole_index``."""
        return _as_crops(self.boxes(images, landmarks, generator), f"{type(self).__name__}.regions")

    def feature_map(self, images: Tensor) -> Tensor:
        """The trunk's feature map ``(B, C', h, w)`` of ``images`` ``(B, C, H, W)`` (uint8 divided by 255)."""
        owner = type(self).__name__
        images = check_images(images, owner)
        if images.dtype == torch.uint8:
            images = images.to(self.cropper.dtype or self.classifier.weight.dtype) / 255
        self._check_dtype(images, "images")
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        fmap: Tensor = self.trunk(images)
        if fmap.dim() != 4 or fmap.shape[0] != images.shape[0]:
            raise ValueError(
                f"{owner} expected the trunk to return a (B, C, h, w) feature map for "
                f"{shape_str(images.shape)} images, got {shape_str(fmap.shape)}"
            )
        return fmap

    @override
    def embed(
        self, regions: RegionCrops | RegionBoxes, images: Tensor | None = None, *, check_boxes: bool = True
    ) -> Tensor:
        """The head's features ``(B, K, D)`` of ``regions.boxes`` (pixels of ``images``), pooled from the trunk's
        feature map of ``images`` by :class:`~region_attention.RegionAlign` (``check_boxes`` as there; regions
        where ``regions.mask`` is ``False`` are not checked; crops in ``regions``, if any, are not used: the
        regions come from the feature map)."""
        owner = f"{type(self).__name__}.embed"
        regions = _as_crops(regions, owner)
        if images is None:
            raise ValueError(f"{owner} expected the images whose feature map the regions are pooled from, got None")
        fmap = self.feature_map(images)
        size = (images.shape[-2], images.shape[-1])
        pooled = self.align(fmap, regions.boxes, size, mask=regions.mask, check_boxes=check_boxes)  # (B, K, C, r, r)
        feats = self._features(self.head, rearrange(pooled, "b k c h w -> (b k) c h w"), "head")
        return rearrange(feats, "(b k) d -> b k d", k=pooled.shape[1])
