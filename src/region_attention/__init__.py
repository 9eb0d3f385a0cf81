"""region-attention: the Region Attention Network (Wang et al., IEEE TIP 2020) as composable PyTorch layers."""

from . import functional
from .cropping import RegionCropper, RegionCrops
from .functional import RelationAttentionOutput, SelfAttentionOutput
from .loss import RANLossOutput, RegionAttentionLoss, RegionBiasedLoss
from .network import RANOutput, RegionAttentionNetwork
from .pooling import RelationAttentionPool, SelfAttentionPool

__version__ = "0.1.0.dev0"

__all__ = [
    "RANLossOutput",
    "RANOutput",
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
]
