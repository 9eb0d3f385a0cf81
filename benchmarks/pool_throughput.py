"""Speed and peak memory of GatedAttentionPool against torch_geometric's AttentionalAggregation.

Run on our 2-core CPU (the defaults) or with a GPU (``--device cuda``)::

    python benchmarks/pool_throughput.py                 # both settings on the CPU, a few minutes
    python benchmarks/pool_throughput.py --quick         # smoke run (small bags, few repeats)
    python benchmarks/pool_throughput.py --device cuda

What it measures: one forward and backward pass (parameter gradients; ``--x-grad`` also asks for the
features' gradient, as when a backbone sits below the pool) of a gated attention pool with ``dim=512``,
``hidden=128``, one head, on

a. 8 bags of 4,096 instances each (no mask);
b. 64 ragged bags of 16 to 1,024 instances (sizes drawn uniformly, seed 0): given to torch_geometric as the
   concatenated instances with an index vector, to us padded by :func:`region_attention.pad_bags` with its
   mask (the padding is part of our input and of our cost; padding happens once, outside the timing, as a
   collate function would do it).

torch_geometric gets the same network as ``gate_nn`` (the very same ``V``, ``U`` and ``w`` modules, so both
compute the same numbers, checked before timing). Times are medians of interleaved runs (each variant in
turn, repeatedly, so that drift affects both alike).

Peak memory is measured honestly for each device:

- CUDA: ``torch.cuda.max_memory_allocated`` during the pass, minus what was allocated before it.
- CPU: torch has no allocator statistics there (and ``tracemalloc`` does not see torch's buffers), so each
  variant runs in a fresh subprocess with glibc's mmap threshold fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``),
  which makes every tensor buffer a mapping of its own that is unmapped when freed; after a warm-up pass
  the peak resident set is reset (``/proc/self/clear_refs``) and one pass runs. The figure is the peak
  resident set during that pass minus the resident set before it: the memory the pass needed on top of its
  inputs and parameters. Linux only; elsewhere it is reported as n/a.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_medians, machine_description, print_table, sync
from region_attention import GatedAttentionPool, pad_bags

MiB = 2**20


class GateNN(nn.Module):
    """torch_geometric's ``gate_nn``: ``w(tanh(V x) * sigmoid(U x))`` with the pool's own modules."""

    def __init__(self, pool: GatedAttentionPool) -> None:
        super().__init__()
        gate = pool.U
        if gate is None:  # an ungated pool has no sigmoid gate to share
            raise ValueError("GateNN needs a gated pool (gated=True)")
        self.V, self.U, self.w = pool.V, gate, pool.w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = self.w(torch.tanh(self.V(x)) * torch.sigmoid(self.U(x)))
        return scores


def make_case(case: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The same bags in both layouts: padded (B, K, D) with a mask for us, flat (N, D) with an index for PyG."""
    gen = torch.Generator().manual_seed(0)
    if case == "a":
        sizes = [args.bag_size] * args.bags
    else:
        sizes = torch.randint(args.min_size, args.max_size + 1, (args.ragged_bags,), generator=gen).tolist()
    bags = [torch.randn(n, args.dim, generator=gen) for n in sizes]
    flat = torch.cat(bags).to(device)
    index = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).to(device)
    if case == "a":  # equal sizes: no padding and no mask needed
        x, mask = flat.view(len(sizes), sizes[0], args.dim), None
    else:
        x, mask = pad_bags([b.to(device) for b in bags])
    if args.x_grad:
        flat.requires_grad_(True)
        x = x.detach().requires_grad_(True)
    return {"sizes": sizes, "x": x, "mask": mask, "flat": flat, "index": index}


def make_steps(
    data: dict[str, Any], args: argparse.Namespace, device: torch.device
) -> dict[str, Callable[[], torch.Tensor]]:
    from torch_geometric.nn.aggr import AttentionalAggregation

    torch.manual_seed(0)
    pool = GatedAttentionPool(args.dim, args.hidden, device=device)
    pyg = AttentionalAggregation(GateNN(pool))
    x, mask, flat, index, bsz = data["x"], data["mask"], data["flat"], data["index"], len(data["sizes"])

    def ours() -> torch.Tensor:
        pool.zero_grad(set_to_none=True)
        out = pool(x, mask).pooled
        out.square().mean().backward()  # type: ignore[no-untyped-call]  # torch leaves backward unannotated
        return out

    def theirs() -> torch.Tensor:
        pool.zero_grad(set_to_none=True)
        out: torch.Tensor = pyg(flat, index, dim_size=bsz)
        out.square().mean().backward()  # type: ignore[no-untyped-call]  # torch leaves backward unannotated
        return out

    return {"GatedAttentionPool (padded + mask)": ours, "torch_geometric AttentionalAggregation (index)": theirs}


def describe(case: str, data: dict[str, Any]) -> str:
    sizes = data["sizes"]
    if case == "a":
        return f"a. {len(sizes)} bags x {sizes[0]} instances"
    padded = len(sizes) * max(sizes)
    return (
        f"b. {len(sizes)} ragged bags of {min(sizes)}-{max(sizes)} instances "
        f"({sum(sizes)} instances, padded to {padded}: {100 * sum(sizes) / padded:.0f} % present)"
    )


# ------------------------------------------------------------------------------------------------------
# Peak memory
# ------------------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(args: argparse.Namespace) -> None:
    """In a fresh process: one warm-up pass, reset the peak RSS, one measured pass; print the peak in bytes."""
    device = torch.device("cpu")
    data = make_case(args.memory_child[0], args, device)
    step = list(make_steps(data, args, device).values())[int(args.memory_child[1])]
    step()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
    before = _status_kib("VmRSS")
    step()
    print(json.dumps({"peak_bytes": (_status_kib("VmHWM") - before) * 1024}))


def peak_memory(
    case: str, which: int, data: dict[str, Any], args: argparse.Namespace, device: torch.device
) -> float | None:
    if device.type == "cuda":
        step = list(make_steps(data, args, device).values())[which]
        step()
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    if not Path("/proc/self/clear_refs").exists():
        return None
    cmd = [sys.executable, __file__, "--memory-child", case, str(which), *args.child_args]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    peak: float = json.loads(result.stdout.strip().splitlines()[-1])["peak_bytes"]
    return peak


# ------------------------------------------------------------------------------------------------------


def run_case(case: str, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    data = make_case(case, args, device)
    steps = make_steps(data, args, device)
    outs = [fn().detach() for fn in steps.values()]
    gap = (outs[0] - outs[1]).abs().max().item()
    if gap > 1e-3:
        raise RuntimeError(f"the two pools disagree by {gap}: the comparison would be meaningless")
    med = interleaved_medians(steps, args.repeats, 1, device)
    base = med[list(steps)[1]]
    rows: list[dict[str, Any]] = []
    for which, (name, t) in enumerate(med.items()):
        peak = None if args.no_memory else peak_memory(case, which, data, args, device)
        rows.append(
            {
                "case": case,
                "what": name,
                "ms": t * 1e3,
                "x_pyg": base / t,
                "peak_mib": None if peak is None else peak / MiB,
            }
        )
    print_table(
        f"{describe(case, data)}, dim={args.dim}, hidden={args.hidden}, forward + backward"
        f"{' (with the features gradient)' if args.x_grad else ''} on {machine_description(device)}; "
        f"max |ours - PyG| = {gap:.1e}",
        ["layer", "ms", "speed vs PyG", "peak MiB"],
        [
            [
                r["what"],
                f"{r['ms']:.1f}",
                f"{r['x_pyg']:.2f}",
                "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}",
            ]
            for r in rows
        ],
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", default="a,b", help="comma-separated: a (equal bags), b (ragged bags)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--bags", type=int, default=8, help="bags in case a")
    parser.add_argument("--bag-size", type=int, default=4096, help="instances per bag in case a")
    parser.add_argument("--ragged-bags", type=int, default=64, help="bags in case b")
    parser.add_argument("--min-size", type=int, default=16, help="smallest bag in case b")
    parser.add_argument("--max-size", type=int, default=1024, help="largest bag in case b")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--x-grad", action="store_true", help="also compute the gradient of the features")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="smoke run: small bags, few repeats")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    parser.add_argument("--memory-child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.bag_size, args.ragged_bags, args.max_size, args.repeats = 256, 8, 128, 3
    # what a memory subprocess needs to rebuild the same data
    args.child_args = [
        *("--dim", str(args.dim), "--hidden", str(args.hidden), "--bags", str(args.bags)),
        *("--bag-size", str(args.bag_size), "--ragged-bags", str(args.ragged_bags)),
        *("--min-size", str(args.min_size), "--max-size", str(args.max_size)),
        *(["--x-grad"] if args.x_grad else []),
        *(["--threads", str(args.threads)] if args.threads else []),
    ]
    if args.memory_child:
        memory_child(args)
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but CUDA is not available")
    device = torch.device(args.device)
    rows: list[dict[str, Any]] = []
    for case in args.cases.split(","):
        rows += run_case(case, args, device)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
