"""Former home of the region functions, kept so that ``region_attention.functional.cropping`` imports work.

The boxes live in :mod:`region_attention.functional.boxes`, the crop op in
:mod:`region_attention.functional.crop`, their input checks in ``region_attention._validation``. Import the
names from :mod:`region_attention.functional`.
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

__all__ = [
    "BOX_PRESETS",
    "LANDMARK_BORDERS",
    "RegionBoxes",
    "crop_regions",
    "landmark_boxes",
    "preset_boxes",
    "random_boxes",
    "reduce_landmarks",
    "region_boxes",
]
