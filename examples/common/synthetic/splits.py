r"""What every writer takes: how many images each split of a generated dataset gets (:class:`Splits`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

__all__ = ["Splits"]


@dataclass(frozen=True)
class Splits:
    """Images per split of a generated dataset, in the readers' split names.

    ``train``: the training split. ``valid``: the validation split of a dataset that ships one besides its test
    split (FERPlus ``PublicTest``). ``test``: the split the readers test on (FERPlus ``PrivateTest``; the
    validation set that AffectNet, SFEW and the RAF-DB test folder publish). A writer takes the splits of its
    dataset and rejects a size for a split its dataset does not have (:meth:`sizes`).
    """

    train: int = 0
    valid: int = 0
    test: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"Splits.{f.name} expected an int, got {type(value).__name__}")
            if value < 0:
                raise ValueError(f"Splits.{f.name} must be >= 0, got {value}")

    def sizes(self, names: Sequence[str], writer: str) -> dict[str, int]:
        """``{name: size}`` for the splits ``names`` of ``writer``'s dataset, in that order; a ValueError if a
        split outside ``names`` was given a size."""
        extra = [f.name for f in fields(self) if f.name not in names and getattr(self, f.name)]
        if extra:
            raise ValueError(
                f"{writer} writes the splits {', '.join(names)}; got sizes for {', '.join(extra)} "
                f"({', '.join(f'{name}={getattr(self, name)}' for name in extra)})"
            )
        return {name: getattr(self, name) for name in names}
