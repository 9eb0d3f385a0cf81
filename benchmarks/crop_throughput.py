"""Throughput of RegionCropper against the per-image PIL region path of the FER repositories.

Run on our 2-core CPU (the defaults) or with a GPU (``--device cuda``)::

    python benchmarks/crop_throughput.py                  # parts 1 and 2 on the CPU, ~1-2 minutes
    python benchmarks/crop_throughput.py --quick          # smoke run (small batch, few repeats)
    python benchmarks/crop_throughput.py --device cuda    # parts 1 and 2, plus part 3 on the GPU

What it measures (64 RGB 224 x 224 images, the paper's five regions plus the whole face, K = 6; medians of
interleaved runs):

1. cropping a batch on the CPU, in images/s and as a ratio to the PIL path: the FER repositories' data
   path (per image and region a PIL crop, a resize to 224 and ``torchvision.transforms.ToTensor``, then
   the batch stacked as ``default_collate`` does), a naive ``grid_sample`` cropper (the input copied
   ``K`` times, one call), merely writing the float32 output (the memory floor), and ``RegionCropper``
   on float32 and on uint8 images (and with per-image random boxes); ``benchmarks/fast_paths.py`` compares
   the crop op's CPU fast paths with its plain path;
2. the host side of a whole data pipeline from JPEG files through a ``DataLoader`` with 2 workers:
   decode, then either the PIL region path (``K`` crops, resizes and ``ToTensor`` per image) or one resize
   to 224 returning uint8 (the regions are cut later, on the device, by ``RegionCropper``);
3. on CUDA: the cropper's throughput on the device and its share of a ResNet-18 training step on the
   ``B * K`` crops (float32, and bfloat16 autocast with channels-last).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_medians, machine_description, print_table, sync
from region_attention import RegionCropper
from region_attention.functional import BOX_PRESETS

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

PAPER = BOX_PRESETS["paper"]


# ------------------------------------------------------------------------------------------------------
# The baselines
# ------------------------------------------------------------------------------------------------------


def pil_regions(
    image: PILImage, size: int
) -> torch.Tensor:  # PIL.Image -> (K, C, size, size): whole face first, then the regions
    from PIL import Image
    from torchvision.transforms import functional as TF

    width, height = image.size
    whole = image if image.size == (size, size) else image.resize((size, size), Image.Resampling.BILINEAR)
    regions = [TF.to_tensor(whole)]
    for x1, y1, x2, y2 in PAPER:
        crop = image.crop((x1 * width, y1 * height, x2 * width, y2 * height))
        regions.append(TF.to_tensor(crop.resize((size, size), Image.Resampling.BILINEAR)))
    return torch.stack(regions)


def naive_grid_sample(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """A straightforward cropper: the input repeated per region, one ``grid_sample`` over all of them."""
    bsz, chans, height, width = images.shape
    k = boxes.shape[0]
    t = (torch.arange(size, device=images.device, dtype=images.dtype) + 0.5) / size
    xs = boxes[:, 0, None] + t * (boxes[:, 2, None] - boxes[:, 0, None])  # (K, size) pixels
    ys = boxes[:, 1, None] + t * (boxes[:, 3, None] - boxes[:, 1, None])
    grid = torch.stack(
        torch.broadcast_tensors(  # type: ignore[no-untyped-call]  # torch leaves broadcast_tensors unannotated
            xs[:, None, :] / width * 2 - 1, ys[:, :, None] / height * 2 - 1
        ),
        -1,
    )
    grid = grid.to(images.dtype).repeat(bsz, 1, 1, 1)  # (B*K, size, size, 2)
    out = F.grid_sample(images.repeat_interleave(k, 0), grid, align_corners=False, padding_mode="border")
    return out.view(bsz, k, chans, size, size)


# ------------------------------------------------------------------------------------------------------
# Part 1: cropping on the CPU
# ------------------------------------------------------------------------------------------------------


def part1(args: argparse.Namespace) -> list[dict[str, Any]]:
    from PIL import Image

    torch.manual_seed(0)
    bsz, size = args.batch, args.size
    cpu = torch.device("cpu")
    u8 = torch.randint(0, 256, (bsz, 3, size, size), dtype=torch.uint8)
    images = u8.float() / 255
    pils = [Image.fromarray(u8[i].permute(1, 2, 0).numpy()) for i in range(bsz)]
    fixed, random_ = RegionCropper(size), RegionCropper(size, strategy="random")
    k = fixed.K
    pixel_boxes = fixed.boxes(images).boxes[0]
    with torch.no_grad():
        ours = fixed(images).crops
        assert ours is not None  # RegionCropper always crops (only the one-pass network's output has no crops)
        pil = torch.stack([pil_regions(im, size) for im in pils])
    # PIL rounds crop boxes to whole pixels and resizes in uint8: close to ours, not equal.
    gap = (ours - pil).abs().mean().item()
    fns: dict[str, Callable[[], object]] = {
        "PIL crop + resize + ToTensor per image and region (FER repos)": lambda: torch.stack(
            [pil_regions(im, size) for im in pils]
        ),
        f"naive grid_sample (input copied K={k} times, one call)": lambda: naive_grid_sample(images, pixel_boxes, size),
        "write the float32 output only (memory floor)": lambda: torch.empty(bsz, k, 3, size, size).fill_(0.5),
        "RegionCropper, float32 images": lambda: fixed(images),
        "RegionCropper, uint8 images (/255 inside)": lambda: fixed(u8),
        "RegionCropper(strategy='random'), float32 (per-image boxes)": lambda: random_(images),
    }
    with torch.no_grad():
        med = interleaved_medians(fns, args.repeats, 1, cpu)
    base = med[next(iter(fns))]
    rows = [{"part": 1, "what": name, "images_per_s": bsz / t, "ratio_to_pil": base / t} for name, t in med.items()]
    print_table(
        f"1. Cropping {bsz} RGB {size}x{size} images into K={k} regions on the CPU "
        f"({machine_description(cpu)}; mean |ours - PIL| = {gap:.4f})",
        ["path", "images/s", "x PIL path"],
        [[r["what"], f"{r['images_per_s']:.0f}", f"{r['ratio_to_pil']:.2f}"] for r in rows],
    )
    return rows


# ------------------------------------------------------------------------------------------------------
# Part 2: the host side of a data pipeline from JPEG files
# ------------------------------------------------------------------------------------------------------


class JpegFaces(torch.utils.data.Dataset[torch.Tensor]):
    def __init__(self, files: list[Path], size: int, regions: bool) -> None:
        self.files, self.size, self.regions = files, size, regions

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image
        from torchvision.transforms import functional as TF

        image = Image.open(self.files[i]).convert("RGB")
        if self.regions:  # the FER repositories: K crops, resizes and ToTensor per image
            return pil_regions(image, self.size)
        # ours: one resize, uint8; the regions are cut on the device for the whole batch
        resized: torch.Tensor = TF.pil_to_tensor(image.resize((self.size, self.size), Image.Resampling.BILINEAR))
        return resized


def write_jpegs(folder: Path, count: int, side: int) -> list[Path]:
    """Smooth synthetic faces-sized images (noise upsampled, plus fine grain), saved at JPEG quality 90."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    files = []
    for i in range(count):
        low = torch.rand(1, 3, 12, 12, generator=g)
        img = F.interpolate(low, size=(side, side), mode="bicubic", align_corners=False)
        img = (img + 0.05 * torch.randn(1, 3, side, side, generator=g)).clamp(0, 1)
        arr = (img[0].permute(1, 2, 0) * 255).to(torch.uint8).numpy()
        path = folder / f"face_{i:04d}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        files.append(path)
    return files


def part2(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        files = write_jpegs(Path(tmp), args.jpegs, args.jpeg_side)
        results: dict[str, float] = {}
        for name, regions in (
            ("decode + PIL region path (K crops, resizes, ToTensor)", True),
            ("decode + one resize to uint8 (regions cut on the device)", False),
        ):
            loader = torch.utils.data.DataLoader(
                JpegFaces(files, args.size, regions),
                batch_size=args.batch,
                num_workers=args.workers,
                persistent_workers=args.workers > 0,
            )
            for _ in loader:  # warm-up epoch: starts the workers
                pass
            times = []
            for _ in range(args.epochs):
                start = time.perf_counter()
                for _ in loader:
                    pass
                times.append(time.perf_counter() - start)
            results[name] = sorted(times)[len(times) // 2]
            del loader
        base = results[next(iter(results))]
        for name, t in results.items():
            rate = len(files) / t
            # with every worker busy, each image costs workers / rate seconds of host CPU
            rows.append(
                {
                    "part": 2,
                    "what": name,
                    "images_per_s": rate,
                    "ratio_to_pil": base / t,
                    "host_ms_per_image": 1e3 * max(args.workers, 1) / rate,
                }
            )
    print_table(
        f"2. Host side of a JPEG pipeline ({args.jpegs} files of {args.jpeg_side}x{args.jpeg_side}, "
        f"DataLoader with {args.workers} workers, batch {args.batch})",
        ["pipeline", "images/s", "x PIL path", "host CPU ms/image"],
        [
            [r["what"], f"{r['images_per_s']:.0f}", f"{r['ratio_to_pil']:.2f}", f"{r['host_ms_per_image']:.1f}"]
            for r in rows
        ],
    )
    return rows


# ------------------------------------------------------------------------------------------------------
# Part 3: on the GPU
# ------------------------------------------------------------------------------------------------------


def part3(args: argparse.Namespace) -> list[dict[str, Any]]:
    from torchvision.models import resnet18

    device = torch.device(args.device)
    bsz, size = args.batch, args.size
    torch.manual_seed(0)
    u8 = torch.randint(0, 256, (bsz, 3, size, size), dtype=torch.uint8, device=device)
    images = u8.float() / 255
    fixed, random_ = RegionCropper(size), RegionCropper(size, strategy="random")
    k = fixed.K
    cropped = fixed(images).crops
    assert cropped is not None  # RegionCropper always crops
    crops = cropped.flatten(0, 1)
    labels = torch.randint(0, 8, (bsz * k,), device=device)
    rows: list[dict[str, Any]] = []
    for label, amp, channels_last in (("float32", False, False), ("bf16 autocast, channels-last", True, True)):
        model = resnet18(num_classes=8).to(device)
        batch = crops
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            batch = crops.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(
            model: torch.nn.Module = model,
            batch: torch.Tensor = batch,
            opt: torch.optim.Optimizer = opt,
            amp: bool = amp,
        ) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(model(batch), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves backward unannotated
            opt.step()

        fns: dict[str, Callable[[], object]] = {
            "RegionCropper, float32 images": lambda: fixed(images),
            "RegionCropper, uint8 images": lambda: fixed(u8),
            "RegionCropper(strategy='random')": lambda: random_(images),
            f"ResNet-18 training step on {bsz}x{k} crops ({label})": step,
        }
        med = interleaved_medians(fns, args.repeats, 2, device)
        step_t = med[f"ResNet-18 training step on {bsz}x{k} crops ({label})"]
        for name, t in med.items():
            share = t / (t + step_t) if not name.startswith("ResNet") else float("nan")
            rows.append(
                {
                    "part": 3,
                    "what": name,
                    "setting": label,
                    "ms": t * 1e3,
                    "images_per_s": bsz / t,
                    "share_of_step": share,
                }
            )
        del model, opt
    print_table(
        f"3. On {machine_description(device)}: {bsz} images, K={k}",
        ["what", "setting", "ms", "images/s", "share of crop + step"],
        [
            [
                r["what"],
                r["setting"],
                f"{r['ms']:.2f}",
                f"{r['images_per_s']:.0f}",
                "-" if r["share_of_step"] != r["share_of_step"] else f"{100 * r['share_of_step']:.1f}%",
            ]
            for r in rows
        ],
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for part 3 (parts 1-2 always run on the CPU)")
    parser.add_argument("--parts", default=None, help="comma-separated parts to run (default: 1,2 and 3 on cuda)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--jpegs", type=int, default=256, help="JPEG files in part 2")
    parser.add_argument("--jpeg-side", type=int, default=256, help="side of the JPEG files in part 2")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers in part 2")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs in part 2")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="smoke run: small batch, few repeats")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.batch, args.repeats, args.jpegs, args.epochs = 8, 2, 32, 1
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but CUDA is not available")
    parts = args.parts.split(",") if args.parts else ["1", "2"] + (["3"] if args.device.startswith("cuda") else [])
    rows: list[dict[str, Any]] = []
    for part, fn in (("1", part1), ("2", part2), ("3", part3)):
        if part in parts:
            rows += fn(args)
            sync(torch.device(args.device))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
