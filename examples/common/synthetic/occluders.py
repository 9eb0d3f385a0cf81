r"""Occlusion ground truth: where every generated face's occluder is, stored beside the data.

The generator knows what it drew, so every FERPlus and AffectNet look-alike carries ``occluders.npz`` in its
root folder: per split ``<split>_keys`` (the image keys, a numpy unicode array ``(N,)``) and ``<split>_alpha``
(``uint8`` ``(N, H, W)``, the written image's size). ``alpha`` is ``round(255 * a)`` where ``a`` is the opacity
with which the face's occluder was composited over the pixel (:class:`~examples.common.synthetic.render.Rendered`):
0 where the occluder is absent, 255 where it hides the face completely, in between on its anti-aliased edge.
A face without an occluder (and every non-face image) has an all-zero alpha. The file is a plain ``.npz``
(``numpy.load(path)["test_alpha"]``) written with fixed zip timestamps, so the same seed gives the same bytes;
:func:`load_occluders` and :func:`load_occluder_masks` read it without numpy.

Keys and splits (the keys of the readers and of the subset lists):

* FERPlus: splits ``train``, ``valid``, ``test``; key ``fer%07d`` of the row index, which is the ``Image name``
  without ``.png`` (rows without a name, which the readers drop, are stored too), 48 x 48.
* AffectNet: splits ``train``, ``val`` (the provider's names; ``val`` is the readers' ``test``); key the image
  file's stem (the 56-hex id in the csv layout, ``<n>`` in the npy layout); ``image_size`` x ``image_size``,
  in the pixels of the whole image (the reader later cuts the face box out of it).

Coverage of region boxes (:func:`box_coverage`): boxes live in the network's input (say 224 x 224, the 48 x 48
image resized), the mask in the written image. Pass ``image_size=(224, 224)`` and the boxes are scaled by
``W / 224``, ``H / 224`` into the mask's pixels; a coverage is a ratio of areas, so it does not depend on the
resolution it is computed at. For AffectNet, whose reader crops the face box ``(x, y, s, s)`` first, map a
network box ``b`` to ``(x + b * s / 224)`` before calling.
"""

from __future__ import annotations

import ast
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "OCCLUDERS_FILE",
    "Occluders",
    "box_coverage",
    "load_occluder_masks",
    "load_occluders",
    "write_occluders",
]

#: File name of the occlusion ground truth in a generated dataset's root folder.
OCCLUDERS_FILE = "occluders.npz"
_MAGIC = b"\x93NUMPY\x01\x00"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so that the same data gives the same bytes


class Occluders(NamedTuple):
    """One split of ``occluders.npz``: image ``keys`` and the occluder opacity ``alpha`` ``(N, H, W)`` float32 in
    ``[0, 1]`` (multiples of 1/255)."""

    keys: list[str]
    alpha: Tensor


def _npy(shape: tuple[int, ...], descr: str, data: bytes) -> bytes:
    """An ``.npy`` file (format 1.0) holding ``data`` (C order)."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    pad = -(len(_MAGIC) + 2 + len(header) + 1) % 64
    header += b" " * pad + b"\n"
    return _MAGIC + len(header).to_bytes(2, "little") + header + data


def _keys_npy(keys: Sequence[str]) -> bytes:
    width = max([1, *(len(k) for k in keys)])
    data = "".join(k.ljust(width, "\0") for k in keys).encode("utf-32-le")
    return _npy((len(keys),), f"<U{width}", data)


def write_occluders(path: str | Path, splits: Mapping[str, tuple[Sequence[str], Tensor]]) -> Path:
    """Write ``occluders.npz``: for each split its keys and its occluder opacity ``(N, H, W)`` (float in
    ``[0, 1]``, stored as ``round(255 * alpha)``, or already ``uint8``)."""
    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for split, (keys, alpha) in splits.items():
            if alpha.dim() != 3 or alpha.shape[0] != len(keys):
                raise ValueError(
                    f"write_occluders expected alpha of shape ({len(keys)}, H, W) for split {split!r}, "
                    f"got {tuple(alpha.shape)}"
                )
            if alpha.dtype != torch.uint8:
                alpha = (alpha.clamp(0, 1) * 255.0).round_().to(torch.uint8)
            members = {
                f"{split}_keys.npy": _keys_npy(list(keys)),
                f"{split}_alpha.npy": _npy(tuple(alpha.shape), "|u1", bytes(alpha.contiguous().reshape(-1).tolist())),
            }
            for name, blob in members.items():
                info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, blob)
    return path


def _read_npy(blob: bytes, where: str) -> tuple[str, tuple[int, ...], bytes]:
    if not blob.startswith(b"\x93NUMPY"):
        raise ValueError(f"{where} is not an .npy array")
    major = blob[6]
    size_bytes = 2 if major == 1 else 4
    start = 8 + size_bytes
    length = int.from_bytes(blob[8:start], "little")
    header = ast.literal_eval(blob[start : start + length].decode("latin1"))
    if header.get("fortran_order"):
        raise ValueError(f"{where}: Fortran-ordered arrays are not supported")
    return str(header["descr"]), tuple(int(v) for v in header["shape"]), blob[start + length :]


def load_occluders(data_dir: str | Path, split: str) -> Occluders:
    """Read one split of ``<data_dir>/occluders.npz`` (see the module docstring).

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> tmp = Path(tempfile.mkdtemp())
        >>> alpha = torch.zeros(2, 4, 4); alpha[1, :2] = 1.0
        >>> _ = write_occluders(tmp / OCCLUDERS_FILE, {"test": (["a", "b"], alpha)})
        >>> found = load_occluders(tmp, "test")
        >>> found.keys, found.alpha.shape, float(found.alpha[1].sum())
        (['a', 'b'], torch.Size([2, 4, 4]), 8.0)
    """
    path = Path(data_dir) / OCCLUDERS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no occlusion ground truth in {data_dir}: expected {OCCLUDERS_FILE} (written by "
            "examples.common.synthetic's FERPlus and AffectNet generators)"
        )
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        splits = sorted(n[: -len("_keys.npy")] for n in names if n.endswith("_keys.npy"))
        if split not in splits:
            raise ValueError(f"load_occluders got split {split!r}, expected one of {', '.join(splits)} ({path})")
        descr, shape, data = _read_npy(zf.read(f"{split}_keys.npy"), f"{path}:{split}_keys")
        if not descr.startswith("<U") or len(shape) != 1:
            raise ValueError(f"{path}:{split}_keys: expected a 1-d unicode array, got {descr} {shape}")
        width = int(descr[2:])
        text = data[: 4 * width * shape[0]].decode("utf-32-le")
        keys = [text[i * width : (i + 1) * width].rstrip("\0") for i in range(shape[0])]
        descr, shape, data = _read_npy(zf.read(f"{split}_alpha.npy"), f"{path}:{split}_alpha")
        if descr != "|u1" or len(shape) != 3 or shape[0] != len(keys):
            raise ValueError(f"{path}:{split}_alpha: expected uint8 ({len(keys)}, H, W), got {descr} {shape}")
    count = shape[0] * shape[1] * shape[2]
    alpha = torch.frombuffer(bytearray(data[:count]), dtype=torch.uint8).reshape(shape)
    return Occluders(keys, alpha.float() / 255.0)


def load_occluder_masks(data_dir: str | Path, split: str, *, threshold: float = 0.5) -> dict[str, Tensor]:
    """``{image key: bool (H, W)}``: True where the occluder makes up more than ``threshold`` of the pixel's
    colour (``threshold=0``: wherever it shows at all). A face without an occluder has an all-False mask."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"load_occluder_masks got threshold={threshold}, expected a value in [0, 1)")
    found = load_occluders(data_dir, split)
    masks = found.alpha > threshold
    return {key: masks[i] for i, key in enumerate(found.keys)}


def box_coverage(mask: Tensor, boxes: Tensor, *, image_size: tuple[int, int] | None = None) -> Tensor:
    """The share of each box's area that the occluder covers.

    Convention:
        Boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates: mask pixel ``(i, j)`` (row, column) is the
        square ``[j, j + 1) x [i, i + 1)``. A box's covered area is the sum over pixels of ``mask[i, j]`` times
        the area the box shares with that pixel, so fractional box edges count the partial pixels they cut; a
        float mask (the opacity of :func:`load_occluders`) weighs each pixel by how much of it the occluder
        hides. The coverage is that area divided by the box's whole area: a part of the box outside the image
        counts as not covered (the mask says nothing there), a box wholly outside gives 0, and so does a box of
        zero area. With ``image_size=(W_in, H_in)`` the boxes are given in an image of that size showing the
        same field of view (the network's input) and are scaled to the mask's ``(W, H)`` first.

    Args:
        mask: bool or float (opacity in ``[0, 1]``).
        boxes: floating point, ``x2 >= x1`` and ``y2 >= y1``.
        image_size: ``(W_in, H_in)`` of the frame the boxes are in; default the mask's own.

    Shapes:
        - mask: :math:`(H, W)` or :math:`(B, H, W)`
        - boxes: :math:`(K, 4)` or :math:`(B, K, 4)` (batched with a batched mask)
        - output: :math:`(K,)` or :math:`(B, K)`, float64 in ``[0, 1]``

    Example:
        >>> import torch
        >>> mask = torch.zeros(4, 4, dtype=torch.bool); mask[:2] = True  # the top half
        >>> box_coverage(mask, torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 1.5, 4.0, 2.5], [0.0, 0.0, 8.0, 2.0]]))
        tensor([0.5000, 0.5000, 0.5000], dtype=torch.float64)
        >>> box_coverage(mask, torch.tensor([[0.0, 0.0, 224.0, 112.0]]), image_size=(224, 224))
        tensor([1.], dtype=torch.float64)
    """
    if not isinstance(mask, Tensor) or not isinstance(boxes, Tensor):
        raise TypeError(f"box_coverage expected tensors, got mask {type(mask).__name__}, boxes {type(boxes).__name__}")
    if mask.dim() not in (2, 3):
        raise ValueError(f"box_coverage expected mask of shape (H, W) or (B, H, W), got {tuple(mask.shape)}")
    if boxes.dim() != mask.dim() or boxes.shape[-1] != 4 or (mask.dim() == 3 and boxes.shape[0] != mask.shape[0]):
        want = "(K, 4)" if mask.dim() == 2 else f"({mask.shape[0]}, K, 4)"
        raise ValueError(
            f"box_coverage expected boxes of shape {want} for a mask of shape {tuple(mask.shape)}, "
            f"got {tuple(boxes.shape)}"
        )
    if not boxes.is_floating_point():
        raise TypeError(f"box_coverage expected floating-point boxes, got {boxes.dtype}")
    b = boxes.to(torch.float64)
    height, width = mask.shape[-2:]
    if image_size is not None:
        w_in, h_in = image_size
        if w_in <= 0 or h_in <= 0:
            raise ValueError(f"box_coverage got image_size={image_size}, expected a positive (W, H)")
        b = b * torch.tensor([width / w_in, height / h_in, width / w_in, height / h_in], dtype=torch.float64)
    if not bool(torch.isfinite(b).all()):
        raise ValueError("box_coverage expected finite box coordinates, got inf or nan")
    x1, y1, x2, y2 = b.unbind(-1)
    if bool((x2 < x1).any()) or bool((y2 < y1).any()):
        raise ValueError("box_coverage expected boxes with x2 >= x1 and y2 >= y1 (xyxy), got an inverted box")
    m = mask.to(torch.float64)
    cols = torch.arange(width, dtype=torch.float64, device=b.device)
    rows = torch.arange(height, dtype=torch.float64, device=b.device)
    # Overlap of [x1, x2) with every pixel column [j, j + 1), and of [y1, y2) with every row: (..., K, W|H).
    ox = (torch.minimum(x2.unsqueeze(-1), cols + 1) - torch.maximum(x1.unsqueeze(-1), cols)).clamp_min(0)
    oy = (torch.minimum(y2.unsqueeze(-1), rows + 1) - torch.maximum(y1.unsqueeze(-1), rows)).clamp_min(0)
    covered = torch.einsum("...kh,...hw,...kw->...k", oy, m, ox)
    area = (x2 - x1) * (y2 - y1)
    return torch.where(area > 0, covered / area.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
