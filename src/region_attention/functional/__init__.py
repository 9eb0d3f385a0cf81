"""Functional twins of the region-attention modules: the math as pure functions of tensors.

Each module's ``forward`` is one call to its twin here with the module's own parameters, so
``region_attention.functional`` is the single place where the paper's equations live.
"""

from .boxes import (
    BOX_PRESETS,
    LANDMARK_BORDERS,
    RegionBoxes,
    landmark_boxes,
    preset_boxes,
    random_boxes,
    reduce_landmarks,
    region_boxes,
)
from .crop import crop_regions
from .gated import GatedAttentionOutput, gated_attention_pool
from .loss import region_biased_loss
from .pooling import (
    RelationAttentionOutput,
    SelfAttentionOutput,
    relation_attention_pool,
    self_attention_pool,
)
from .region_align import region_align

__all__ = [
    "BOX_PRESETS",
    "LANDMARK_BORDERS",
    "GatedAttentionOutput",
    "RegionBoxes",
    "RelationAttentionOutput",
    "SelfAttentionOutput",
    "crop_regions",
    "gated_attention_pool",
    "landmark_boxes",
    "preset_boxes",
    "random_boxes",
    "reduce_landmarks",
    "region_align",
    "region_biased_loss",
    "region_boxes",
    "relation_attention_pool",
    "self_attention_pool",
]
