"""The RAF-DB formats: class names, the label file's names, and the Kaggle-style copy's files.

A leaf module (it imports nothing from the examples): the readers (:mod:`examples.rafdb.data`) and the
generator (:mod:`examples.common.synthetic`) both take their tables from here.
"""

from __future__ import annotations

__all__ = ["IMAGE_KINDS", "KAGGLE_FILES", "LABEL_FILE_NAMES", "LAYOUTS", "RAFDB_CLASSES", "SPLITS"]

#: Class ``i`` = official label ``i + 1``.
RAFDB_CLASSES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
#: The shipped spelling first, then the provider README's.
LABEL_FILE_NAMES = ("list_patition_label.txt", "list_partition_label.txt")
#: Split -> label file of the Kaggle-style copy.
KAGGLE_FILES = {"train": "train_labels.csv", "test": "test_labels.csv"}
LAYOUTS = ("auto", "provider", "kaggle")
IMAGE_KINDS = ("aligned", "original")
SPLITS = ("train", "test")
