#!/usr/bin/env bash
# All GPU checks of the benchmarks issue in one run: under 9 minutes on one H200 (limits add up to 545 s)
# (jax with CUDA, flax, optax, orbax, PyTorch; no TFDS, no network needed).
#
#   bash benchmarks/gpu_check.sh            # results in $OUT (the device tool's folder) or benchmarks/results
#
# 1. environment: devices, versions, whether cuDNN attention runs;
# 2. gpt.py: GPT-2 small (124M, T=1024, bf16, AdamW, cuDNN attention) tokens/s and MFU, goal >= 45% of the
#    H200's 989 TFLOP/s dense bf16, through fit and through a loop on the core;
# 3. cnn.py: airbench94's network, nnjax fit against the same network in PyTorch eager (bf16 autocast,
#    channels-last), goal: nnjax at least as fast;
# 4. mlp.py: the tutorial MLP, nnjax fit against a hand-written jax.jit loop and the lax.scan ceiling.
# QUICK=1 runs every step at a tiny size (a dry run of this script on a CPU).
# Each step has its own time limit, so one slow or failing step cannot use up the others' time;
# a step that fails leaves its log (*.log) next to the JSON files. Then make_readme.py renders the tables.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="${OUT:-benchmarks/results}"
mkdir -p "$RESULTS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.6}"  # leave room for PyTorch in cnn.py
PY="${PYTHON:-python3}"
START=$SECONDS

step() {  # step NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s, at $((SECONDS - START))s)"
  if timeout --kill-after=10 "$limit" "$@" >"$RESULTS/$name.log" 2>&1; then
    echo "--- $name ok"
  else
    echo "--- $name FAILED or timed out (exit $?); last lines of $RESULTS/$name.log:"
    tail -n 25 "$RESULTS/$name.log"
  fi
}

if [ "${QUICK:-0}" = 1 ]; then
  GPT_ARGS=(--steps 2 --epochs 1 --batch-size 4 --context 16 --vocab 64)
  CNN_ARGS=(--examples 64 --batch-size 32 --widths 8,16,16 --epochs 1 --rounds 1)
  MLP_ARGS=(--examples 300 --epochs 1 --rounds 1)
else
  GPT_ARGS=(--steps 12 --epochs 3)
  CNN_ARGS=(--epochs 2 --rounds 5)
  MLP_ARGS=(--epochs 2 --rounds 5)
fi

step environment 45 "$PY" - <<'EOF'
import importlib.metadata as md, jax, jax.numpy as jnp
print("devices:", jax.devices())
for name in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "flax", "optax", "orbax-checkpoint", "torch", "numpy"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        pass
q = jnp.ones((2, 1024, 12, 64), jnp.bfloat16)
out = jax.nn.dot_product_attention(q, q, q, is_causal=True, implementation="cudnn")
print("cudnn attention:", out.shape, out.dtype)
import nnjax.bench as b
print("peak bf16 FLOP/s:", b.peak_flops(dtype="bf16"), "device kind:", jax.devices()[0].device_kind)
EOF
cat "$RESULTS/environment.log"

step gpt 240 "$PY" benchmarks/gpt.py --contenders nnjax_fit,nnjax_core_loop "${GPT_ARGS[@]}" --out "$RESULTS/gpt_gpu.json"
step cnn 180 "$PY" benchmarks/cnn.py --contenders nnjax_fit,nnjax_core_loop,torch_eager "${CNN_ARGS[@]}" --out "$RESULTS/cnn_gpu.json"
step mlp 80 "$PY" benchmarks/mlp.py --contenders nnjax_fit,nnjax_fit_spe,jax_loop,jax_scan "${MLP_ARGS[@]}" --out "$RESULTS/mlp_gpu.json"

echo "=== summary (at $((SECONDS - START))s)"
"$PY" - "$RESULTS" <<'EOF'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*_gpu.json"))):
    data = json.load(open(path))
    print(os.path.basename(path))
    for row in data["results"]:
        keys = ("tokens_per_s", "mfu", "ms_per_step", "epoch_s", "steps_per_s", "compiles_after_warmup", "reason")
        print("  ", row["name"], row["status"], {k: row[k] for k in keys if row.get(k) is not None})
    print("   ratios:", data.get("ratios"))
EOF
if [ "$RESULTS" != "benchmarks/results" ]; then
  cp "$RESULTS"/*_gpu.json benchmarks/results/ 2>/dev/null || true
fi
"$PY" benchmarks/make_readme.py && cp benchmarks/README.md "$RESULTS/README.md" 2>/dev/null || true
echo "=== done in $((SECONDS - START))s"
