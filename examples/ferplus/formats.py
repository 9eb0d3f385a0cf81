"""The FERPlus formats: class names, the files' columns and folders, and the provider's label rules.

A leaf module (it imports nothing from the examples): the readers (:mod:`examples.ferplus.data`) and the
generator (:mod:`examples.common.synthetic`) both take their tables and the majority rule from here, so writer
and reader cannot disagree.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "FER2013_EMOTION",
    "FER2013_HEADER",
    "FERPLUS_CLASSES",
    "FERPLUS_HEADER",
    "LABEL_MODES",
    "SPLITS",
    "SPLIT_FOLDERS",
    "USAGE_TO_SPLIT",
    "VOTE_COLUMNS",
    "LabelDecision",
    "majority_label",
    "process_votes",
]

FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
#: The 10 vote columns of ``fer2013new.csv`` / ``label.csv``, in file order.
VOTE_COLUMNS = (*FERPLUS_CLASSES, "unknown", "NF")
#: The header of ``fer2013new.csv`` (the older version has no ``Image name`` column).
FERPLUS_HEADER = ("Usage", "Image name", *VOTE_COLUMNS)
#: The header of ``fer2013.csv``.
FER2013_HEADER = ("emotion", "pixels", "Usage")
#: FER2013 7-class ``emotion`` code (0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral) of each
#: FERPlus class; FER2013 has no contempt, it is written as Neutral (6).
FER2013_EMOTION = (6, 3, 5, 4, 0, 1, 2, 6)
LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target")
SPLITS = ("train", "valid", "test")
#: ``Usage`` column -> split, in file order.
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "valid", "PrivateTest": "test"}
#: Split -> image folder of the provider's layout.
SPLIT_FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}

_NUM_CLASSES = len(FERPLUS_CLASSES)
_NUM_VOTES = len(VOTE_COLUMNS)
_UNKNOWN, _NF = 8, 9


@dataclass(frozen=True)
class LabelDecision:
    """Outcome of :func:`process_votes`: ``target`` (8 floats summing to 1) or None, and why.

    ``reason`` is ``"kept"`` or one of: ``all_single_votes`` (no vote count above 1), ``no_majority``
    (majority: the top entry has at most half the votes), ``low_share`` (the kept entries hold at most half the
    votes), ``too_many_classes`` (probability/crossentropy: more than 3 entries kept through ties),
    ``top_unknown`` / ``top_nf`` (the top kept entry is unknown / not-a-face).
    """

    target: tuple[float, ...] | None
    reason: str


def _check_votes(votes: Sequence[int]) -> list[float]:
    if len(votes) != _NUM_VOTES:
        raise ValueError(f"expected {_NUM_VOTES} vote counts ({', '.join(VOTE_COLUMNS)}), got {len(votes)}")
    if any(v < 0 for v in votes):
        raise ValueError(f"vote counts must be non-negative, got {list(votes)}")
    return [float(v) for v in votes]


def process_votes(votes: Sequence[int], mode: str) -> LabelDecision:
    """Turn 10 vote counts (8 classes, unknown, NF) into a training target as the provider's code does.

    1. Every count of 1 is set to 0 (single votes are outliers); ``total`` is the sum of what remains over all
       10 columns.
    2. ``majority``: keep the top entry (first on ties) if it has more than ``0.5 * total``; else drop.
       ``probability`` / ``crossentropy``: while the kept sum is below ``0.75 * total``, fewer than 3 entries are
       kept and unknown/NF has not been reached, take *all* entries equal to the current maximum, in column
       order; if unknown/NF is among them and something is already kept, it is not kept, and the loop ends.
       Drop if the kept sum is ``<= 0.5 * total`` or more than 3 entries were kept.
       ``multi_target``: keep entries with at least ``0.3 * total``; drop if their sum is ``<= 0.5 * total``.
    3. Drop if the top kept entry (first on ties) is unknown or NF; otherwise the target is the kept counts of the
       8 classes divided by their sum (one-hot for majority).

    Comparisons use Python floats exactly as the provider's code does.
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"unknown label mode {mode!r}; expected one of {', '.join(LABEL_MODES)}")
    raw = _check_votes(votes)
    raw = [0.0 if v < 1.0 + sys.float_info.epsilon else v for v in raw]  # single votes are outliers
    total = sum(raw)
    if total <= 0.0:
        return LabelDecision(None, "all_single_votes")
    kept = [0.0] * _NUM_VOTES
    if mode == "majority":
        top = max(raw)
        if not top > 0.5 * total:
            return LabelDecision(None, "no_majority")
        kept[raw.index(top)] = top
    elif mode in ("probability", "crossentropy"):
        remaining = list(raw)
        kept_sum, count, reached_unknown = 0.0, 0, False
        while kept_sum < 0.75 * total and count < 3 and not reached_unknown:
            top = max(remaining)
            for i in range(_NUM_VOTES):
                if remaining[i] != top:
                    continue
                kept[i] = top
                remaining[i] = 0.0
                kept_sum += top
                count += 1
                if i >= _UNKNOWN:
                    reached_unknown = True
                    if sum(kept) > top:  # classes were kept before unknown/NF: do not keep it
                        kept[i] = 0.0
                        count -= 1
                    break
        if sum(kept) <= 0.5 * total:
            return LabelDecision(None, "low_share")
        if count > 3:
            return LabelDecision(None, "too_many_classes")
    else:  # multi_target
        threshold = 0.3 * total
        kept = [v if v >= threshold else 0.0 for v in raw]
        if sum(kept) <= 0.5 * total:
            return LabelDecision(None, "low_share")
    top_index = kept.index(max(kept))
    if top_index == _UNKNOWN:
        return LabelDecision(None, "top_unknown")
    if top_index == _NF:
        return LabelDecision(None, "top_nf")
    class_sum = sum(kept[:_NUM_CLASSES])
    return LabelDecision(tuple(v / class_sum for v in kept[:_NUM_CLASSES]), "kept")


def majority_label(votes: Sequence[int]) -> int:
    """The majority class (0-7) of 10 vote counts under the provider's rule, or -1 if there is none."""
    target = process_votes(votes, "majority").target
    return -1 if target is None else target.index(1.0)
