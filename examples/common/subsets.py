"""Readers for the published occlusion / pose test lists of the RAN paper.

The lists come from ``kaiwang960112/Challenge-condition-FER-dataset``. They use a different line format for
almost every file and have defects (CRLF line endings, missing final newlines, duplicate lines); this module
parses all of them into one :class:`SubsetList` and matches it against a dataset's test images.

Every entry is reduced to an *image key* that the dataset readers produce as well (:func:`image_key`):

============  ==================================================  ==============================
dataset       list line (one format per file)                     key
============  ==================================================  ==============================
ferplus       ``3_fer0034656.png 8 2``   (occlusion, k = type)     ``fer0034656``
ferplus       ``0/fer0032226.jpg``       (pose > 30 / > 45)        ``fer0032226``
ferplus       ``0_fer0032226.txt 0_fer0032226_label.txt 4``        ``fer0032226``
affectnet     ``val/0/<56-hex>/``        (occlusion)               ``<56-hex>``
affectnet     ``0/<56-hex>.jpg``         (pose > 30)               ``<56-hex>``
affectnet     ``0/<56-hex>/8.jpg``       (pose > 45)               ``<56-hex>``
rafdb         ``test_0003_aligned 3 4``  (occlusion, k = type)     ``test_0003``
rafdb         ``0/test_0004_aligned.jpg`` (pose; optional label    ``test_0004``
              file ``N 7`` + one label per line)
============  ==================================================  ==============================

Labels are kept as written in the list. Their class orders (from the lists' provenance) are: FERPlus 0 neutral,
1 happiness, 2 surprise, 3 sadness, 4 anger, 5 disgust, 6 fear, 7 contempt; AffectNet the ``expression`` codes
(0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt); RAF-DB the official label minus
one (0 surprise, 1 fear, 2 disgust, 3 happiness, 4 sadness, 5 anger, 6 neutral). A dataset reader must use the
same order for :func:`match_subset_with_labels` to be meaningful.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DATASETS",
    "SubsetEntry",
    "SubsetList",
    "SubsetMatch",
    "add_subset_argument",
    "image_key",
    "known_formats",
    "match_subset",
    "match_subset_with_labels",
    "parse_subset_arg",
    "parse_subset_list",
    "read_label_file",
]

DATASETS = ("ferplus", "affectnet", "rafdb")

_HEX = r"[0-9A-Fa-f]{32,64}"


@dataclass(frozen=True)
class _Format:
    name: str
    dataset: str
    example: str
    pattern: re.Pattern[str]
    # group names used: key, label, kind; "label2"/"key2" must agree with label/key when present


def _fmt(name: str, dataset: str, example: str, pattern: str) -> _Format:
    return _Format(name, dataset, example, re.compile(pattern))


_FORMATS: tuple[_Format, ...] = (
    _fmt(
        "ferplus_occlusion",
        "ferplus",
        "1_fer0034656.png 8 0",
        r"(?P<label>\d+)_(?P<key>fer\d{7})\.png\s+\d+\s+(?P<kind>\d+)",
    ),
    _fmt(
        "ferplus_pose",
        "ferplus",
        "0/fer0032226.jpg",
        r"(?P<label>\d+)/(?P<key>fer\d{7})\.(?:jpg|jpeg|png)",
    ),
    _fmt(
        "ferplus_mn",
        "ferplus",
        "0_fer0032226.txt 0_fer0032226_label.txt 4",
        r"(?P<label>\d+)_(?P<key>fer\d{7})\.txt\s+(?P<label2>\d+)_(?P<key2>fer\d{7})_label\.txt\s+\d+",
    ),
    _fmt(
        "affectnet_occlusion",
        "affectnet",
        "val/0/bc9ad400db82eca1882b11c9603348fb3e92f5b0d67391ac22a1bc79/",
        rf"val/(?P<label>\d+)/(?P<key>{_HEX})/?",
    ),
    _fmt(
        "affectnet_pose",
        "affectnet",
        "0/83dac9d7eec7fb0bfef79b4d35ddc69a6f7fb458d3bffc4e78f33ad9.jpg",
        rf"(?P<label>\d+)/(?P<key>{_HEX})\.(?:jpg|jpeg|png)",
    ),
    _fmt(
        "affectnet_region",
        "affectnet",
        "7/3c028208c27c0be5fbe6a52738bebcbfb6c64f3220f523a84b267203/8.jpg",
        rf"(?P<label>\d+)/(?P<key>{_HEX})/\d+\.(?:jpg|jpeg|png)",
    ),
    _fmt(
        "rafdb_occlusion",
        "rafdb",
        "test_0003_aligned 3 4",
        r"(?P<key>(?:test|train)_\d+)(?:_aligned)?\s+(?P<label>\d+)\s+(?P<kind>\d+)",
    ),
    _fmt(
        "rafdb_pose",
        "rafdb",
        "0/test_0004_aligned.jpg",
        r"(?P<label>\d+)/(?P<key>(?:test|train)_\d+)(?:_aligned)?\.(?:jpg|jpeg|png)",
    ),
)


def known_formats(dataset: str | None = None) -> list[str]:
    """Names and example lines of the list formats known for ``dataset`` (all datasets if None)."""
    return [f"{f.name} ({f.example!r})" for f in _FORMATS if dataset is None or f.dataset == dataset]


@dataclass(frozen=True)
class SubsetEntry:
    """One image of a subset list.

    ``key``: image-matching key (see :func:`image_key`); ``label``: the class label written in the list (its
    dataset's published order), or None; ``kind``: the list's extra integer (occlusion type for the FERPlus and
    RAF-DB occlusion lists), or None; ``line``: 1-based line of its first occurrence.
    """

    key: str
    label: int | None
    kind: int | None
    line: int


@dataclass
class SubsetList:
    """A parsed subset list. ``entries`` hold each key once, in file order of first occurrence."""

    name: str
    path: Path
    dataset: str
    format: str
    entries: list[SubsetEntry]
    duplicates: int = 0
    lines: int = 0
    duplicate_keys: list[str] = field(default_factory=list)
    label_path: Path | None = None

    @property
    def keys(self) -> list[str]:
        return [e.key for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def summary(self) -> str:
        text = (
            f"subset {self.name!r}: {len(self.entries)} images from {self.lines} lines of {self.path} ({self.format})"
        )
        if self.duplicates:
            text += f", {self.duplicates} duplicate line(s) counted once ({', '.join(self.duplicate_keys[:5])})"
        return text


def image_key(dataset: str, name: str | Path) -> str:
    """The key under which an image of ``dataset`` is matched against subset lists.

    ``name`` is an image file name or path. FERPlus: the stem (``fer0032226``); AffectNet: the stem, i.e. the hex
    id; RAF-DB: the stem without ``_aligned`` (``test_0003``) so aligned and original images give the same key.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    stem = Path(str(name).replace("\\", "/")).name
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    if dataset == "rafdb" and stem.endswith("_aligned"):
        stem = stem[: -len("_aligned")]
    return stem


def read_text_lines(path: Path, what: str = "file") -> list[tuple[int, str]]:
    """Non-blank lines of a text file as ``(1-based line, stripped text)``: accepts a UTF-8 BOM, CRLF or CR line
    ends and a missing final newline (the published lists have all of these). ``what`` names the file in errors."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:  # the line of the offending byte (CRLF, LF or CR line ends)
        before = raw[: err.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        line, column = before.count(b"\n") + 1, len(before) - before.rfind(b"\n")
        raise ValueError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column "
            f"{column}); save the file as UTF-8"
        ) from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [(n, line.strip()) for n, line in enumerate(lines, start=1) if line.strip()]


def _detect(path: Path, number: int, line: str, dataset: str) -> _Format:
    for fmt in _FORMATS:
        if fmt.dataset == dataset and fmt.pattern.fullmatch(line):
            return fmt
    others = [f for f in _FORMATS if f.dataset != dataset and f.pattern.fullmatch(line)]
    hint = f" (it looks like a {others[0].dataset} list, format {others[0].name})" if others else ""
    raise ValueError(
        f"{path}, line {number}: unknown subset-list line {line!r} for dataset {dataset!r}{hint}; "
        f"known {dataset} formats: {'; '.join(known_formats(dataset))}"
    )


def read_label_file(path: str | Path) -> list[int]:
    """Read a RAF-DB style label file: a header ``N C`` (count, number of classes), then one label per line.

    Checks the header, the count and that every label lies in ``[0, C)``; errors name the file and line.
    """
    path = Path(path)
    lines = read_text_lines(path, "subset list")
    if not lines:
        raise ValueError(f"{path}: empty label file (expected a header 'N C' and N labels)")
    number, header = lines[0]
    parts = header.split()
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(f"{path}, line {number}: expected a header 'N C' (count, classes), got {header!r}")
    count, classes = int(parts[0]), int(parts[1])
    labels = []
    for number, line in lines[1:]:
        if not (line.isascii() and line.isdigit()) or int(line) >= classes:
            raise ValueError(f"{path}, line {number}: expected one label in 0..{classes - 1}, got {line!r}")
        labels.append(int(line))
    if len(labels) != count:
        raise ValueError(f"{path}: header says {count} labels, file has {len(labels)}")
    return labels


def parse_subset_list(
    path: str | Path,
    dataset: str = "ferplus",
    label_path: str | Path | None = None,
    name: str | None = None,
) -> SubsetList:
    """Parse a published subset list, detecting its line format from the first non-blank line.

    Every other line must have the same format; a line that does not raises ValueError naming the file, the
    line number, the line and the known formats. Blank lines, CRLF endings and a missing final newline are
    accepted. A key listed twice with the same label and kind is kept once and counted in ``duplicates``; a key
    listed twice with a different label or kind is an error.

    ``label_path``: optional companion label file (``N C`` header, one label per line, in list order, as
    published for the RAF-DB pose lists). It must have one label per non-blank list line and agree with the
    label written in each line; otherwise ValueError.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    path = Path(path)
    lines = read_text_lines(path, "subset list")
    if not lines:
        raise ValueError(f"{path}: the subset list is empty")
    fmt = _detect(path, *lines[0], dataset)
    entries: dict[str, SubsetEntry] = {}
    line_labels: list[tuple[int, int | None]] = []
    duplicates = 0
    duplicate_keys: list[str] = []
    for number, line in lines:
        match = fmt.pattern.fullmatch(line)
        if match is None:
            detail = _detect_quiet(line, dataset)
            raise ValueError(
                f"{path}, line {number}: line {line!r} does not have the format of the first line "
                f"({fmt.name}, e.g. {fmt.example!r}){detail}; known {dataset} formats: "
                f"{'; '.join(known_formats(dataset))}"
            )
        groups = match.groupdict()
        if groups.get("key2") is not None and (groups["key2"], groups["label2"]) != (groups["key"], groups["label"]):
            raise ValueError(f"{path}, line {number}: the two file names in {line!r} disagree")
        key = groups["key"]
        label = int(groups["label"]) if groups.get("label") is not None else None
        kind = int(groups["kind"]) if groups.get("kind") is not None else None
        line_labels.append((number, label))
        previous = entries.get(key)
        if previous is None:
            entries[key] = SubsetEntry(key, label, kind, number)
        elif (previous.label, previous.kind) == (label, kind):
            duplicates += 1
            duplicate_keys.append(key)
        else:
            raise ValueError(
                f"{path}, line {number}: {key} is listed again with label {label}, kind {kind} "
                f"(line {previous.line}: label {previous.label}, kind {previous.kind})"
            )
    resolved_label_path = None
    if label_path is not None:
        resolved_label_path = Path(label_path)
        _cross_check_labels(path, resolved_label_path, line_labels)
    return SubsetList(
        name=name if name is not None else path.stem,
        path=path,
        dataset=dataset,
        format=fmt.name,
        entries=list(entries.values()),
        duplicates=duplicates,
        lines=len(lines),
        duplicate_keys=duplicate_keys,
        label_path=resolved_label_path,
    )


def _detect_quiet(line: str, dataset: str) -> str:
    for fmt in _FORMATS:
        if fmt.pattern.fullmatch(line):
            return f" (it matches {fmt.name})"
    return ""


def _cross_check_labels(path: Path, label_path: Path, line_labels: list[tuple[int, int | None]]) -> None:
    labels = read_label_file(label_path)
    if len(labels) != len(line_labels):
        raise ValueError(
            f"{label_path} has {len(labels)} labels but {path} has {len(line_labels)} non-blank lines; "
            "is it the companion label file of this list?"
        )
    disagree = [
        (number, own, other)
        for (number, own), other in zip(line_labels, labels, strict=True)
        if own is not None and own != other
    ]
    if disagree:
        shown = ", ".join(f"line {n}: list {a} vs label file {b}" for n, a, b in disagree[:5])
        raise ValueError(f"{label_path} disagrees with {path} on {len(disagree)} label(s): {shown}")


def match_subset(subset: SubsetList, keys_to_index: Mapping[str, int]) -> tuple[list[int], list[str]]:
    """Dataset indices of the subset's images (list order), and the keys that match no dataset image.

    Callers should report the unmatched keys (e.g. images dropped by the dataset's label rules).
    """
    indices: list[int] = []
    unmatched: list[str] = []
    for entry in subset.entries:
        index = keys_to_index.get(entry.key)
        if index is None:
            unmatched.append(entry.key)
        else:
            indices.append(index)
    return indices, unmatched


@dataclass
class SubsetMatch:
    """Result of :func:`match_subset_with_labels`.

    ``disagreements``: (key, label in the list, label in the dataset) for matched images whose labels differ;
    images without a label in the list, or with a negative (undefined) dataset label, are not compared.
    """

    indices: list[int]
    unmatched: list[str]
    disagreements: list[tuple[str, int, int]]

    @property
    def label_disagreements(self) -> int:
        return len(self.disagreements)

    def summary(self, name: str = "subset") -> str:
        text = f"{name}: {len(self.indices)} matched, {len(self.unmatched)} unmatched"
        if self.unmatched:
            text += f" ({', '.join(self.unmatched[:5])}{', ...' if len(self.unmatched) > 5 else ''})"
        return text + f", {len(self.disagreements)} label disagreement(s)"


def match_subset_with_labels(
    subset: SubsetList, keys_to_index: Mapping[str, int], labels: Sequence[int]
) -> SubsetMatch:
    """Like :func:`match_subset`, also comparing each list label with ``labels[index]`` of the dataset."""
    indices, unmatched = match_subset(subset, keys_to_index)
    disagreements = []
    for entry in subset.entries:
        index = keys_to_index.get(entry.key)
        if index is None or entry.label is None:
            continue
        own = int(labels[index])
        if own >= 0 and own != entry.label:
            disagreements.append((entry.key, entry.label, own))
    return SubsetMatch(indices, unmatched, disagreements)


_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def parse_subset_arg(text: str, must_exist: bool = True) -> tuple[str, Path]:
    """Parse a ``--subset NAME=PATH`` argument; raises ``argparse.ArgumentTypeError`` with a clear message."""
    name, sep, path = text.partition("=")
    name, path = name.strip(), path.strip()
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(
            f"expected NAME=PATH (e.g. occlusion=lists/jianfei_occlusion_list.txt), got {text!r}"
        )
    if not _NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"subset name {name!r} may only contain letters, digits and _ . + - (in {text!r})"
        )
    result = Path(path).expanduser()
    if must_exist and not result.is_file():
        raise argparse.ArgumentTypeError(f"subset list for {name!r} not found: {result}")
    return name, result


def add_subset_argument(parser: argparse.ArgumentParser, flag: str = "--subset") -> None:
    """Add a repeatable ``--subset NAME=PATH`` option collecting ``(name, Path)`` pairs (default: none)."""
    parser.add_argument(
        flag,
        action="append",
        default=[],
        type=parse_subset_arg,
        metavar="NAME=PATH",
        help="evaluate also on the test images listed in PATH (a published occlusion/pose list), "
        "reported under NAME; repeatable",
    )
