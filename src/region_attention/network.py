"""The whole Region Attention Network (paper Fig. 1): cropper, shared backbone, two pools, classifier."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ._validation import check_choice, check_positive_int, check_tensor, shape_str
from .cropping import RegionCropper, RegionCrops
from .functional.pooling import VARIANTS, RelationAttentionOutput, SelfAttentionOutput
from .pooling import RelationAttentionPool, SelfAttentionPool

__all__ = ["RANOutput", "RegionAttentionNetwork"]

REGION_BATCHING = ("joint", "per_region")


class RANOutput(NamedTuple):
    """What :class:`RegionAttentionNetwork` returns.

    Attributes:
        logits: ``(B, num_classes)``, the classifier on :math:`P_{RAN}`.
        self_attention: the :class:`~region_attention.SelfAttentionPool` output (pooled, weights, gates).
        relation_attention: the :class:`~region_attention.RelationAttentionPool` output.
        regions: the :class:`~region_attention.RegionCrops` the backbone saw (crops, boxes, mask).
    """

    logits: Tensor
    self_attention: SelfAttentionOutput
    relation_attention: RelationAttentionOutput
    regions: RegionCrops


class RegionAttentionNetwork(nn.Module):
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
        feature_dim: :math:`D`, the size of the backbone's features.
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
            the single joint call is always used. Measured training steps (ResNet-18, batch 16, six regions,
            224 px, ``benchmarks/train_step.py``): on an H100, 24 ms joint against 49 ms per region; on our
            2-core CPU, 8.7 s joint against 6.4 s per region. ``"joint"`` is the default for the GPUs
            where real training runs; pick ``"per_region"`` for CPU training or the authors' BatchNorm.
        attention_bias: add a bias to both attention queries; ``None`` means "as the variant does"
            (no bias for ``"paper"``, bias for ``"authors"``).
        channels_last: feed the backbone channels-last region batches (faster convolutions on GPUs with
            mixed precision; convert the backbone itself with ``.to(memory_format=torch.channels_last)``).

    Shapes:
        - images: :math:`(B, C, H, W)`; landmarks (for a landmark cropper): :math:`(B, L, 2)` pixels
        - output: :class:`RANOutput` with ``logits`` :math:`(B, \text{num_classes})`

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from region_attention import RegionAttentionNetwork, RegionCropper
        >>> backbone = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> model = RegionAttentionNetwork(backbone, 16, num_classes=8, cropper=RegionCropper(32))
        >>> out = model(torch.rand(2, 3, 64, 64))
        >>> out.logits.shape, out.self_attention.weights.shape, out.regions.crops.shape
        (torch.Size([2, 8]), torch.Size([2, 6]), torch.Size([2, 6, 3, 32, 32]))
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        num_classes: int,
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
        check_positive_int(feature_dim, "feature_dim", owner)
        check_positive_int(num_classes, "num_classes", owner)
        check_choice(variant, "variant", VARIANTS, owner)
        check_choice(region_batching, "region_batching", REGION_BATCHING, owner)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"{owner} expected dropout in [0, 1), got {dropout!r}")
        if cropper is not None and not isinstance(cropper, RegionCropper):
            raise TypeError(f"{owner} expected cropper to be a RegionCropper or None, got {type(cropper).__name__}")
        bias = (variant == "authors") if attention_bias is None else bool(attention_bias)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.variant = variant
        self.region_batching = region_batching
        self.channels_last = bool(channels_last)
        self.cropper = cropper if cropper is not None else RegionCropper(224)
        self.backbone = backbone
        self.self_pool = SelfAttentionPool(feature_dim, bias=bias, variant=variant)
        self.relation_pool = RelationAttentionPool(feature_dim, bias=bias, variant=variant)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * feature_dim, num_classes)

    @property
    def whole_index(self) -> int | None:
        """Index of the whole face among the regions (pass it to the region biased loss)."""
        return self.cropper.whole_index

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
        feats = self.embed(regions.crops)
        mask = regions.mask
        s = self.self_pool(feats, mask)
        r = self.relation_pool(feats, s.pooled, s.gates, mask)
        logits = self.classifier(self.dropout(r.pooled))
        return RANOutput(logits, s, r, regions)

    def forward(
        self, images: Tensor, landmarks: Tensor | None = None, generator: torch.Generator | None = None
    ) -> RANOutput:
        """Crop ``images`` ``(B, C, H, W)`` (with ``landmarks`` ``(B, L, 2)`` for a landmark cropper and an
        optional ``generator`` for random regions), then run :meth:`forward_regions`."""
        regions = self.cropper(images, landmarks=landmarks, generator=generator)
        return self.forward_regions(regions)
