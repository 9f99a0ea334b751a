#!/usr/bin/env bash
# Device check for a GPU machine with no internet and no CIFAR-10 (about 3-5 minutes on one
# H100/H200; budget 8). It prints:
#   1. scripts/device_check.py: an 8-epoch training on 50k/10k synthetic CIFAR-format images for
#      adam, nesterov SGD, lion and the exported adam and lion rules: s, images/s, step share;
#   2. scripts/bench_step.py: optimizer.step() of the exported rules vs torch Adam(foreach=True)
#      on resnet18-sized parameters (ratio_vs_adam).
# SIZE=tiny runs both in well under a minute on a CPU. Figures also land in $OUT when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python3; fi
export PYTHONUNBUFFERED=1
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$PWD/build/numba-cache}
export EVOLVE_CACHE_DIR=${EVOLVE_CACHE_DIR:-$PWD/build/evolve-cache}
SIZE=${SIZE:-full}
OUT_DIR=${OUT:-$(mktemp -d)}
mkdir -p "$OUT_DIR"
if [[ "$SIZE" == tiny ]]; then STEP_ARGS=(--steps 2 --rounds 2 --warmup 1)
else STEP_ARGS=(--steps 20 --rounds 7 --warmup 5); fi

"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
"$PY" scripts/device_check.py --size "$SIZE" --json-out "$OUT_DIR/device_check.json"
"$PY" scripts/bench_step.py "${STEP_ARGS[@]}" --json > "$OUT_DIR/bench_step.json"
"$PY" - "$OUT_DIR/bench_step.json" <<'PYEOF'
import json, sys
report = json.load(open(sys.argv[1]))
print(f"optimizer.step() on resnet18 parameters ({report['params']:,}), {report['device']}:")
for label, row in report["results"].items():
    print(f"  {label:36s} {row['ms_per_step']:8.2f} ms  {row['ratio_vs_adam']:5.2f}x adam")
PYEOF
