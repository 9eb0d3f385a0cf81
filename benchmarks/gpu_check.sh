#!/usr/bin/env bash
# One prepared GPU check: run it on a machine with a CUDA device, from the repository root.
#   bash benchmarks/gpu_check.sh            (writes logs under ${OUT:-gpu-check-out}/)
# 1. the test suite on cuda; 2. forward/backward under bf16 and fp16 autocast; 3. the cropper and the
# training-pipeline comparison on the GPU; then one short table.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check-out}"
mkdir -p "$out"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$PWD/src:$PWD:${PYTHONPATH:-}"   # no install step: GPU machines are often offline
"$PY" - <<'PY' | tee "$out/env.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
PY

status=()
timeout 150 "$PY" -m pytest -q -x -p no:cacheprovider --device cuda -m cuda tests --ignore=tests/examples >"$out/pytest_cuda.log" 2>&1
status+=("tests on cuda: $(tail -n 1 "$out/pytest_cuda.log")")

timeout 60 "$PY" - >"$out/autocast.log" 2>&1 <<'PY'
import torch
from region_attention import RegionAttentionLoss, RegionAttentionNetwork, RegionCropper
from region_attention.backbones import resnet18
dev = torch.device("cuda")
for dtype in (torch.bfloat16, torch.float16):
    torch.manual_seed(0)
    model = RegionAttentionNetwork(resnet18(), 512, 8, cropper=RegionCropper(112), region_batching="joint",
                                   channels_last=True).to(dev).to(memory_format=torch.channels_last)
    x = torch.rand(8, 3, 160, 160, device=dev) * 50  # large inputs push the features up
    y = torch.randint(0, 8, (8,), device=dev)
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    with torch.autocast("cuda", dtype=dtype):
        out = model(x)
        loss = RegionAttentionLoss()(out, y).total
    scaler.scale(loss).backward()
    finite = all(torch.isfinite(t).all().item() for t in (*out.self_attention, *out.relation_attention, out.logits))
    grads = all(torch.isfinite(p.grad).all().item() for p in model.parameters() if p.grad is not None)
    print(f"autocast {dtype}: outputs finite={finite} grads finite={grads} loss={loss.item():.4f}")
PY
status+=("autocast: $(grep -c 'finite=True grads finite=True' "$out/autocast.log")/2 finite")

# The one-pass model (regions pooled from the layer3 map) under bf16 autocast, channels-last; region_align
# must give the float32 result under autocast.
timeout 60 "$PY" - >"$out/autocast_one_pass.log" 2>&1 <<'PY'
import torch
from region_attention import FeatureRegionAttentionNetwork, RegionAttentionLoss, RegionCropper
from region_attention.backbones import resnet18_split
from region_attention.functional import region_align
dev = torch.device("cuda")
torch.manual_seed(0)
trunk, head = resnet18_split("layer3")
model = FeatureRegionAttentionNetwork(trunk, head, 512, 8, cropper=RegionCropper(224), channels_last=True)
model = model.to(dev).to(memory_format=torch.channels_last)
x = torch.rand(8, 3, 224, 224, device=dev) * 50
y = torch.randint(0, 8, (8,), device=dev)
with torch.autocast("cuda", dtype=torch.bfloat16):
    out = model(x)
    loss = RegionAttentionLoss()(out, y).total
loss.backward()
finite = all(torch.isfinite(t).all().item() for t in (*out.self_attention, *out.relation_attention, out.logits))
grads = all(torch.isfinite(p.grad).all().item() for p in model.parameters() if p.grad is not None)
fmap = torch.randn(8, 256, 14, 14, device=dev)
with torch.autocast("cuda", dtype=torch.bfloat16):
    auto = region_align(fmap, out.regions.boxes, 224)
exact = torch.allclose(auto, region_align(fmap, out.regions.boxes, 224), atol=1e-5, rtol=1e-5)
print(f"one-pass bf16 channels-last: outputs finite={finite} grads finite={grads} region_align exact={exact}")
PY
status+=("one-pass autocast: $(grep -c 'finite=True grads finite=True region_align exact=True' "$out/autocast_one_pass.log")/1 ok")

if [ -z "${SKIP_CROP:-}" ]; then
  timeout 120 "$PY" benchmarks/crop_throughput.py --device cuda --parts 3 >"$out/crop_throughput.log" 2>&1
  status+=("crop throughput: see crop_throughput.log (rc=$?)")
fi

timeout 200 "$PY" benchmarks/train_step.py --device cuda --amp bf16 --channels-last --loader-workers 8 \
    --skip memory inference one-pass timm --json "$out/train_step.json" >"$out/train_step.log" 2>&1
status+=("train step: $(grep 'ours / authors' "$out/train_step.log" || echo "did not finish (see train_step.log)")")

timeout 200 "$PY" benchmarks/train_step.py --device cuda --amp bf16 --channels-last \
    --skip training inference memory pipeline timm --json "$out/train_step_one_pass.json" \
    >"$out/train_step_one_pass.log" 2>&1
status+=("one-pass step: $(grep 'one-pass step / bare step' "$out/train_step_one_pass.log" || echo "did not finish")")

# Part 6: ConvNeXt-T and ViT-S/16 from timm at 224 px, one-pass (default split) against the bare model.
timeout 200 "$PY" benchmarks/train_step.py --device cuda --amp bf16 --channels-last \
    --skip training inference memory pipeline one-pass --json "$out/train_step_timm.json" \
    >"$out/train_step_timm.log" 2>&1
status+=("timm one-pass: $(grep -c 'one-pass inference / bare' "$out/train_step_timm.log")/2 rows (see train_step_timm.log)")

echo
echo "GPU check summary"
echo "-----------------"
for s in "${status[@]}"; do echo "- $s"; done
tail -n 30 "$out/train_step.log"
tail -n 25 "$out/train_step_one_pass.log"
tail -n 9 "$out/train_step_timm.log"
