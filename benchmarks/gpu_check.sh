#!/usr/bin/env bash
# The GPU check: align_jax's speed on one datacenter GPU, in at most ~5 minutes there.
#
# Runs, on the GPU: the align_jax side of benchmarks/train_bench.py for every model (float32 and
# bfloat16, layer_impl=auto, which is XLA's own convolutions off CPU), two epochs of PhilNet
# through `experiments.train_philnet` on a data directory, and benchmarks/rsa_bench.py at
# n = 10,000 and 30,000 on the jitted path. Prints images/s, epoch time and RSA timings, and
# copies the logs to $OUT (or ./gpu_check_out).
#
# For a GPU machine without network that has jax, flax, optax, orbax, tensorboard, scipy,
# matplotlib and Pillow but not TensorFlow, tfds, clu or ml_collections, two steps:
#   on a machine with network, once:   bash benchmarks/gpu_check.sh prepare
#     -> .gpu_carry/ (git-ignored, ~57 MB): wheels of clu and ml_collections, and the
#        CIFAR-10 JPEG stand-in + CIFAR-10H with their build script (SHARED_DATA=DIR names
#        the folder holding them)
#   on the GPU machine, with .gpu_carry/ copied beside the repository:  bash benchmarks/gpu_check.sh
# GPU_CHECK_SMOKE=1 shrinks every part (PhilNet only, one step, the :smoke config, n = 2,000)
# to check the script itself on a CPU machine in ~2 minutes.
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
[[ -d "$CARRY/wheels" ]] || {
  echo "error: $CARRY/ is missing: run 'bash benchmarks/gpu_check.sh prepare' here first" >&2
  exit 1; }

OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/gpu_check_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_check_site \
    "$CARRY"/wheels/*.whl
data=/tmp/gpu_check_data
[[ -d "$data/cifar-10-batches-bin" ]] || python3 "$CARRY/data/build_cifar10_binary.py" "$data"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"

bench_args=(--repeats=5 --steps=10) philnet_config=experiments/configs/philnet.py
rsa_sizes=(10000 30000)
if [[ -n "${GPU_CHECK_SMOKE:-}" ]]; then
  bench_args=(--models=philnet --repeats=1 --steps=1) philnet_config+=":smoke" rsa_sizes=(2000)
fi

echo "== train_bench (align_jax side) =="
python3 benchmarks/train_bench.py --no_torch --variants=auto,auto:bfloat16 "${bench_args[@]}" \
    2>&1 | tee "$OUT/train_bench.log"

echo "== train_philnet, 2 epochs =="
rm -rf /tmp/gpu_check_philnet
start=$(date +%s)
python3 -m experiments.train_philnet --workdir=/tmp/gpu_check_philnet \
    --config="$philnet_config" --config.num_epochs=2 --config.data_dir="$data" \
    2>&1 | tee "$OUT/train_philnet.log" | grep -E "images/s|validation|test metrics|error" \
    | tail -n 8
echo "train_philnet: 2 epochs in $(( $(date +%s) - start )) s (start-up and compilation included)"

echo "== RSA on the jitted path =="
for n in "${rsa_sizes[@]}"; do
  python3 benchmarks/rsa_bench.py --data_dir="$data" --n=$n --contenders=align_jax_fused \
      --repeats=3 2>&1 | tee -a "$OUT/rsa_bench.log" | tail -n 4
done
