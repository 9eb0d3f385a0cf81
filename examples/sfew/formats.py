"""The SFEW 2.0 formats: class names, the class folders' accepted names, and the two variants' folders.

A leaf module (it imports nothing from the examples): the readers (:mod:`examples.sfew.data`) and the
generator (:mod:`examples.common.synthetic`) both take their tables from here.
"""

from __future__ import annotations

__all__ = ["FOLDER_NAMES", "SFEW_CLASSES", "SHIPPED_FOLDERS", "VARIANTS"]

SFEW_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
#: The folder names of the release, in class order.
SHIPPED_FOLDERS = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
#: Accepted folder names (compared lower-case) -> class index.
FOLDER_NAMES: dict[str, int] = {
    "angry": 0,
    "anger": 0,
    "disgust": 1,
    "fear": 2,
    "happy": 3,
    "happiness": 3,
    "neutral": 4,
    "sad": 5,
    "sadness": 5,
    "surprise": 6,
}
#: variant -> (train folder, validation folders in order of preference); the validation folder is the test split.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "frames": ("Train", ("Val",)),
    "aligned": ("Train_Aligned_Faces", ("Val_Aligned_Faces_new", "Val_Aligned_Faces")),
}
