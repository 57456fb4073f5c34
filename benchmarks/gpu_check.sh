#!/usr/bin/env bash
# The GPU check: verifies align_jax on a GPU machine, then times it (benchmarks/gpu_check.py
# says what each check asserts); one table at the end, exit status 1 if any check failed.
#
# For a GPU machine without network that has jax, flax, optax, orbax, tensorboard, scipy,
# matplotlib and Pillow but not TensorFlow, tfds, clu or ml_collections, two steps:
#   on a machine with network, once:   bash benchmarks/gpu_check.sh prepare
#     -> .gpu_carry/ (git-ignored, ~57 MB): wheels of clu and ml_collections, and the
#        CIFAR-10 JPEG stand-in + CIFAR-10H with their build script (SHARED_DATA=DIR names
#        the folder holding them)
#   on the GPU machine, with .gpu_carry/ copied beside the repository:  bash benchmarks/gpu_check.sh
# GPU_CHECK_SMOKE=1 checks the script itself on a CPU (two forced host devices, the
# :fast_smoke config, small RDMs) in a few minutes; there the data directory is
# $ALIGN_JAX_DATA_DIR when set, and the installed clu and ml_collections are used.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu_carry

if [[ "${1:-}" == "prepare" ]]; then
  shared="${SHARED_DATA:-../shared/data}"
  [[ -f "$shared/build_cifar10_binary.py" ]] || {
    echo "error: $shared/build_cifar10_binary.py not found; set SHARED_DATA=DIR" >&2; exit 1; }
  rm -rf "$CARRY" && mkdir -p "$CARRY/wheels" "$CARRY/data"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp -d "$CARRY/wheels" "clu==0.0.12" "ml-collections==1.1.0"
  cp -r "$shared/build_cifar10_binary.py" "$shared/cifar10-jpeg" "$shared/cifar10h" "$CARRY/data/"
  du -sh "$CARRY"
  exit 0
fi
[[ -z "${1:-}" ]] || { echo "usage: bash benchmarks/gpu_check.sh [prepare]" >&2; exit 2; }
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [[ -n "${GPU_CHECK_SMOKE:-}" ]] && python3 -c "import clu, ml_collections" 2>/dev/null; then
  data="${ALIGN_JAX_DATA_DIR:-/tmp/gpu_check_data}"
  [[ -d "$data/cifar-10-batches-bin" ]] || python3 ../shared/data/build_cifar10_binary.py "$data"
  exec python3 benchmarks/gpu_check.py --smoke --data_dir="$data" --out="$OUT" \
      --work=/tmp/gpu_check_smoke_runs
fi
[[ -d "$CARRY/wheels" ]] || {
  echo "error: $CARRY/ is missing: run 'bash benchmarks/gpu_check.sh prepare' here first" >&2
  exit 1; }
export PYTHONPATH="/tmp/gpu_check_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_check_site \
    "$CARRY"/wheels/*.whl
data=/tmp/gpu_check_data
[[ -d "$data/cifar-10-batches-bin" ]] || python3 "$CARRY/data/build_cifar10_binary.py" "$data"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 benchmarks/gpu_check.py --data_dir="$data" --out="$OUT"
