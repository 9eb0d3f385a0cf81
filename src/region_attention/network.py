"""The whole Region Attention Network (paper Fig. 1): cropper, shared backbone, two pools, classifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ._feature_dim import feature_dim_of, head_feature_dim, image_channels
from ._validation import check_choice, check_positive_int, check_tensor, shape_str
from .cropping import RegionCropper, RegionCrops
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
        regions: the :class:`~region_attention.RegionCrops` of the regions (crops, boxes, mask). From
            :class:`FeatureRegionAttentionNetwork`, which crops no pixels, ``crops`` is ``None`` and only
            ``boxes`` and ``mask`` are set.
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
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"{owner} expected dropout in [0, 1), got {dropout!r}")
    return (variant == "authors") if attention_bias is None else bool(attention_bias)


class _RegionAttentionHead(nn.Module):
    """Everything after the region features, shared by both networks: the two pools, dropout, classifier.

    The networks inherit it (rather than hold it) so the parameters keep their names at the top of the
    state dict (``self_pool.*``, ``relation_pool.*``, ``classifier.*``) and old checkpoints load.
    """

    __call__: Callable[..., RANOutput]  # so module(x) types as forward's output
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
        """Index of the whole face among the regions (pass it to the region biased loss)."""
        return self.cropper.whole_index

    def forward_features(self, feats: Tensor, regions: RegionCrops) -> RANOutput:
        """Everything after the region features ``(B, K, D)``: both pools on ``regions.mask``, the
        classifier, and the :class:`RANOutput` (``regions`` is passed through)."""
        mask = regions.mask
        s = self.self_pool(feats, mask)
        r = self.relation_pool(feats, s.pooled, s.gates, mask)
        logits = self.classifier(self.dropout(r.pooled))
        return RANOutput(logits, s, r, regions)


class RegionAttentionNetwork(_RegionAttentionHead):
    r"""Region Attention Network (Wang et al., TIP 2020, Fig. 1) around any backbone.

    .. math::
        F_i = r(I_i; \theta),\quad
        F_m = \frac{\sum_i \mu_i F_i}{\sum_i \mu_i},\quad
        P_{RAN} = \frac{\sum_i \mu_i\nu_i [F_i : F_m]}{\sum_i \mu_i\nu_i},\quad
        \text{logits} = W P_{RAN} + b

    The cropper turns each image into the whole face and its regions on the images' device; one shared
    backbone embeds every region; :class:`~region_attention.SelfAttentionPool` and
    :class:`~region_attention.RelationAttentionPool` aggregate the features; a linear classifier reads
    :math:`P_{RAN}` (``2 * feature_dim`` features). Train it with
    :class:`~region_attention.RegionAttentionLoss` (cross-entropy + region biased loss, 1:1).

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
            cropper that puts the whole face last and ``RegionAttentionLoss(margin=0.1, whole_index=-1)``.
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

    def extra_repr(self) -> str:
        return (
            f"feature_dim={self.feature_dim}, num_classes={self.num_classes}, variant={self.variant!r}, "
            f"region_batching={self.region_batching!r}"
        )

    def embed(self, crops: Tensor) -> Tensor:
        """Run the backbone over region images ``(B, K, C, h, w)`` and return features ``(B, K, D)``."""
        owner = type(self).__name__
        crops = check_tensor(crops, "crops", owner)
        if crops.dim() != 5:
            raise ValueError(f"{owner} expected crops of shape (B, K, C, h, w), got {shape_str(crops.shape)}")
        bsz, k = crops.shape[:2]
        # In eval mode BatchNorm uses its running statistics, so both modes compute the same features: take the
        # single call, which measured faster for inference on CPU and GPU alike.
        if self.region_batching == "joint" or not self.training:
            feats = self._backbone(crops.flatten(0, 1))
            return feats.reshape(bsz, k, feats.shape[-1])
        return torch.stack([self._backbone(crops[:, i]) for i in range(k)], dim=1)

    def _backbone(self, images: Tensor) -> Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        feats: Tensor = self.backbone(images)
        if feats.dim() == 4 and feats.shape[-2:] == (1, 1):
            feats = feats.flatten(1)
        if feats.dim() != 2 or feats.shape[1] != self.feature_dim:
            raise ValueError(
                f"{type(self).__name__}(feature_dim={self.feature_dim}) expected the backbone to return "
                f"(N, {self.feature_dim}) features for {shape_str(images.shape)} images, got {shape_str(feats.shape)}"
            )
        return feats

    def forward_regions(self, regions: RegionCrops) -> RANOutput:
        """Everything after cropping: backbone, pools and classifier on given :class:`RegionCrops`.

        Use it with region images cut elsewhere (``regions.boxes`` is only passed through).
        """
        if regions.crops is None:
            raise ValueError(
                f"{type(self).__name__}.forward_regions expected regions.crops of shape (B, K, C, h, w), got None "
                "(regions without crops come from FeatureRegionAttentionNetwork, which pools feature maps)"
            )
        return self.forward_features(self.embed(regions.crops), regions)

    def forward(
        self, images: Tensor, landmarks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> RANOutput:
        """Crop ``images`` ``(B, C, H, W)`` (with ``landmarks`` ``(B, L, 2)`` for a landmark cropper and an
        optional ``generator`` for random regions), then run :meth:`forward_regions`."""
        regions = self.cropper(images, landmarks=landmarks, generator=generator)
        return self.forward_regions(regions)


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

    def extra_repr(self) -> str:
        return (
            f"feature_dim={self.feature_dim}, num_classes={self.num_classes}, variant={self.variant!r}, "
            f"roi_size={self.roi_size}, sampling_ratio={self.sampling_ratio}"
        )

    def region_boxes(
        self, images: Tensor, landmarks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """The cropper's boxes ``(B, K, 4)`` (pixels, at least float32) and mask ``(B, K)`` for ``images``,
        without cropping (``self.cropper.boxes(images, landmarks, generator)``)."""
        boxes, mask = self.cropper.boxes(images, landmarks, generator)
        return boxes, mask

    def feature_map(self, images: Tensor) -> Tensor:
        """The trunk's feature map ``(B, C', h, w)`` of ``images`` ``(B, C, H, W)`` (uint8 divided by 255)."""
        if images.dtype == torch.uint8:
            images = images.to(self.cropper.dtype or torch.float32) / 255
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        fmap: Tensor = self.trunk(images)
        if fmap.dim() != 4 or fmap.shape[0] != images.shape[0]:
            raise ValueError(
                f"{type(self).__name__} expected the trunk to return a (B, C, h, w) feature map for "
                f"{shape_str(images.shape)} images, got {shape_str(fmap.shape)}"
            )
        return fmap

    def embed(self, feature_map: Tensor, boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
        """Pool ``boxes`` ``(B, K, 4)`` (pixels of ``image_size`` images) from ``feature_map`` and run the head
        on every region: features ``(B, K, D)``."""
        pooled = self.align(feature_map, boxes, image_size)  # (B, K, C, r, r)
        bsz, k = pooled.shape[:2]
        regions = pooled.flatten(0, 1)
        if self.channels_last:
            regions = regions.contiguous(memory_format=torch.channels_last)
        feats: Tensor = self.head(regions)
        if feats.dim() == 4 and feats.shape[-2:] == (1, 1):
            feats = feats.flatten(1)
        if feats.dim() != 2 or feats.shape[1] != self.feature_dim:
            raise ValueError(
                f"{type(self).__name__}(feature_dim={self.feature_dim}) expected the head to return "
                f"(N, {self.feature_dim}) features for {shape_str(regions.shape)} regions, got {shape_str(feats.shape)}"
            )
        return feats.reshape(bsz, k, self.feature_dim)

    def forward(
        self, images: Tensor, landmarks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> RANOutput:
        """Take the cropper's boxes for ``images`` ``(B, C, H, W)`` (with ``landmarks`` ``(B, L, 2)`` for a
        landmark cropper and an optional ``generator`` for random regions), run the trunk once, pool the
        regions, run the head on each, then :meth:`forward_features`."""
        boxes, mask = self.region_boxes(images, landmarks, generator)
        height, width = images.shape[-2:]
        feats = self.embed(self.feature_map(images), boxes, (height, width))
        # nothing is cropped: the regions are the boxes and the mask alone
        regions = RegionCrops(None, boxes, mask)
        return self.forward_features(feats, regions)
