"""Functional twins of the region-attention modules: the math as pure functions of tensors.

Each module's ``forward`` is one call to its twin here with the module's own parameters, so
``region_attention.functional`` is the single place where the paper's equations live.
"""

from .cropping import (
    BOX_PRESETS,
    LANDMARK_BORDERS,
    crop_regions,
    landmark_boxes,
    preset_boxes,
    random_boxes,
    reduce_landmarks,
)
from .loss import region_biased_loss
from .pooling import (
    RelationAttentionOutput,
    SelfAttentionOutput,
    relation_attention_pool,
    self_attention_pool,
)

__all__ = [
    "BOX_PRESETS",
    "LANDMARK_BORDERS",
    "RelationAttentionOutput",
    "SelfAttentionOutput",
    "crop_regions",
    "landmark_boxes",
    "preset_boxes",
    "random_boxes",
    "reduce_landmarks",
    "region_biased_loss",
    "relation_attention_pool",
    "self_attention_pool",
]
