#!/usr/bin/env bash
# Test the supported torch window at both ends: one fresh virtual environment per end, the pinned
# torch/torchvision pair installed first, then this package with its `test` extra under a constraints
# file (so pip cannot swap the pinned torch for another), then the library tests.
#
# Usage:  bash scripts/check_torch_window.sh [oldest] [newest]      (default: both ends)
# Environment:
#   PYTHON       interpreter the venvs are made from            (default: python3)
#   VENV_ROOT    where the venvs go, outside the repository      (default: /tmp/region-attention-torch-window)
#   PYTEST_ARGS  extra pytest arguments, e.g. "-x" or "-k pool"
#   REUSE_VENV   1: keep a venv that already holds the end's torch and torchvision (only reinstall this
#                package), instead of building it afresh
#
# What it runs, in each venv: `python -m pytest tests src/region_attention --ignore=tests/examples`,
# i.e. the library's tests and the doctests of its docstrings, the README and docs snippets; not the
# example training scripts (tests/examples) and, since the test extra has no Sphinx, not the docs build
# (tests/test_docs.py skips itself). It prints one line per end and exits non-zero if an end failed.
#
# Linux wheels of torch on PyPI are CUDA builds that pull the nvidia-* packages (1-3 GB per end); they
# run on the CPU as well. To test the CPU builds instead, export
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu before running.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV_ROOT="${VENV_ROOT:-/tmp/region-attention-torch-window}"

# The window's two ends: torch and the torchvision release built against it (each torchvision release
# pins one torch release, so the pair must move together). Keep in step with pyproject.toml
# (`torch>=` in dependencies, `torchvision>=` in the extras) and .github/workflows/tests.yml.
declare -A TORCH=([oldest]=2.4.1 [newest]=2.15.0)
declare -A TORCHVISION=([oldest]=0.19.1 [newest]=0.29.2)

ends=("$@")
[ ${#ends[@]} -eq 0 ] && ends=(oldest newest)

summary=()
status=0
for end in "${ends[@]}"; do
    if [ -z "${TORCH[$end]:-}" ]; then
        echo "unknown end '$end', expected oldest or newest" >&2
        exit 2
    fi
    torch_v="${TORCH[$end]}"
    vision_v="${TORCHVISION[$end]}"
    venv="$VENV_ROOT/$end"
    log="$VENV_ROOT/$end.log"
    mkdir -p "$VENV_ROOT"
    echo "== $end: torch $torch_v + torchvision $vision_v in $venv (log: $log)"
    (
        set -e
        py="$venv/bin/python"
        constraints="$VENV_ROOT/$end-constraints.txt"
        printf 'torch==%s\ntorchvision==%s\n' "$torch_v" "$vision_v" > "$constraints"
        # PIP_CONSTRAINT replaces any machine-wide constraint file from pip's configuration.
        export PIP_CONSTRAINT="$constraints" PIP_DISABLE_PIP_VERSION_CHECK=1
        if [ "${REUSE_VENV:-0}" = 1 ] && [ -x "$py" ] && "$py" -c "
import sys, torch, torchvision
sys.exit(not (torch.__version__.split('+')[0] == '$torch_v' and torchvision.__version__.split('+')[0] == '$vision_v'))
" 2>/dev/null; then
            echo "reusing $venv"
        else
            "$PYTHON" -m venv --clear "$venv"
            "$py" -m pip install --quiet --upgrade pip
            "$py" -m pip install --quiet "torch==$torch_v" "torchvision==$vision_v"
        fi
        "$py" -m pip install --quiet -e "$ROOT[test]"
        "$py" -m pip list 2>/dev/null | grep -i -E '^(torch|torchvision|numpy|onnx|onnxruntime|onnxscript|torch.geometric) '
        "$py" -c "import torch, torchvision; print('imported torch', torch.__version__, 'torchvision', torchvision.__version__)"
    ) > "$log" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        line="$end: torch $torch_v + torchvision $vision_v: INSTALL FAILED (see $log)"
        status=1
    else
        py="$venv/bin/python"
        installed="$("$py" -c 'import sys, torch, torchvision; print(f"torch {torch.__version__} + torchvision {torchvision.__version__}, python {sys.version.split()[0]}")')"
        start=$SECONDS
        # shellcheck disable=SC2086
        (cd "$ROOT" && "$py" -m pytest tests src/region_attention --ignore=tests/examples -q \
            -p no:cacheprovider ${PYTEST_ARGS:-}) >> "$log" 2>&1
        rc=$?
        result="$(grep -E '^=*.*(passed|failed|error).* in [0-9.]+s' "$log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')"
        if [ $rc -eq 0 ]; then verdict=PASS; else verdict=FAIL; status=1; fi
        line="$end: $installed: $verdict ($result; $((SECONDS - start)) s)"
    fi
    echo "$line"
    summary+=("$line")
    while IFS= read -r failed; do summary+=("    $failed"); done < <(grep -E '^(FAILED|ERROR) ' "$log" || true)
done

echo
echo "torch window summary"
printf '  %s\n' "${summary[@]}"
exit $status
