"""region-attention: the Region Attention Network (Wang et al., IEEE TIP 2020) as composable PyTorch layers."""

from . import functional
from .cropping import RegionCropper, RegionCrops
from .functional import RelationAttentionOutput, SelfAttentionOutput
from .gated import GatedAttentionOutput, GatedAttentionPool, pad_bags
from .loss import RANLossOutput, RegionAttentionLoss, RegionBiasedLoss
from .network import FeatureRegionAttentionNetwork, RANOutput, RegionAttentionNetwork
from .pooling import RelationAttentionPool, SelfAttentionPool
from .region_align import RegionAlign

__version__ = "0.1.0"

__all__ = [
    "FeatureRegionAttentionNetwork",
    "GatedAttentionOutput",
    "GatedAttentionPool",
    "RANLossOutput",
    "RANOutput",
    "RegionAlign",
    "RegionAttentionLoss",
    "RegionAttentionNetwork",
    "RegionBiasedLoss",
    "RegionCropper",
    "RegionCrops",
    "RelationAttentionOutput",
    "RelationAttentionPool",
    "SelfAttentionOutput",
    "SelfAttentionPool",
    "__version__",
    "functional",
    "pad_bags",
]
