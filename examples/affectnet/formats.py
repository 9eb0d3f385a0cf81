"""The AffectNet formats: class names, expression codes, the CSV columns and the two layouts' files and folders.

A leaf module (it imports nothing from the examples): the readers (:mod:`examples.affectnet.data`) and the
generator (:mod:`examples.common.synthetic`) both take their tables from here.
"""

from __future__ import annotations

__all__ = [
    "AFFECTNET_CLASSES",
    "CSV_COLUMNS",
    "CSV_FILES",
    "CSV_HEADER",
    "EXPRESSION_CODES",
    "IMAGE_ROOTS",
    "LAYOUTS",
    "NPY_FOLDERS",
]

#: Class names in the AffectNet ``expression`` order (codes 0-7).
AFFECTNET_CLASSES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
#: All ``expression`` codes and their meaning.
EXPRESSION_CODES = (*AFFECTNET_CLASSES, "none", "uncertain", "no_face")
LAYOUTS = ("auto", "csv", "npy")
#: The columns a reader needs (``valence`` and ``arousal`` follow in the files and are not read).
CSV_COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
)
#: The header of ``training.csv`` / ``validation.csv``.
CSV_HEADER = (*CSV_COLUMNS, "valence", "arousal")
#: Split -> list file of the csv layout (in ``Manually_Annotated_file_lists/``); the provider's validation set
#: is the test split.
CSV_FILES = {"train": "training.csv", "test": "validation.csv"}
#: Split -> folder of the npy layout.
NPY_FOLDERS = {"train": "train_set", "test": "val_set"}
#: Where the csv layout's images may be.
IMAGE_ROOTS = ("Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images")
