"""The multi-node commands of docs/examples.rst ("Several machines") are accepted as written: each ``torchrun``
line by torch's own launcher parser, and the script's options by the script's parser."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from examples.ferplus.train import build_parser

ROOT = Path(__file__).resolve().parents[2]
#: What SLURM and the batch script would put in the variables the documented lines use.
ENVIRONMENT = {
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NODEID": "1",
    "MASTER_ADDR": "node0",
    "MASTER_PORT": "29500",
    "OUT": "/shared/out",
    "RESUME": "--resume",
}


def section() -> str:
    text = (ROOT / "docs" / "examples.rst").read_text()
    start = text.index("Several machines\n----------------")
    end = text.index("\n---", start + 40)
    return text[start:end]


def torchrun_lines() -> list[str]:
    lines = []
    for block in re.findall(r"\.\. code-block:: bash\n\n((?:   .*\n|\n)+)", section()):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #")[0].strip()
            if "torchrun " in line:
                line = line[line.index("torchrun ") :].rstrip("'")
                lines.append(re.sub(r"\$(\w+)", lambda m: ENVIRONMENT[m.group(1)], line))
    return lines


def test_three_launches_documented():
    lines = torchrun_lines()
    assert len(lines) == 3, lines
    assert "scontrol show hostnames" in section() and "srun" in section()


@pytest.mark.parametrize("line", torchrun_lines())
def test_torchrun_and_script_accept_the_line(line):
    run = pytest.importorskip("torch.distributed.run", reason="torch without torch.distributed")
    args = run.get_args_parser().parse_args(shlex.split(line)[1:])
    assert args.nnodes == "2" and args.nproc_per_node == "4"
    if args.rdzv_backend == "c10d":
        assert args.rdzv_endpoint and args.rdzv_id
    else:
        assert args.node_rank in (0, 1) and args.master_addr and args.master_port == 29500
    assert args.training_script == "examples/ferplus/train.py"
    options = build_parser().parse_args(args.training_script_args)
    assert options.data_dir is not None and options.output_dir is not None and options.batch_size == 32
