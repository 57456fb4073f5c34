"""The GPU check: verifies align_jax on a GPU machine, then times it, in about five minutes.

Each check passes or fails; one table at the end, and the exit status is 1 if any failed:
  backend     the default backend is a GPU, with the expected number of devices
  devices     PhilNet :fast for a fixed number of steps on 1 device and on all local devices:
              the logged losses agree within LOSS_TOLERANCE (the global batch is the same)
  bfloat16    the same steps in bfloat16 train (finite, the loss falls)
  fast        PhilNet :fast to its full budget: test accuracy (plain and test-time augmented)
              and wall time
  rsa         the device RDM and Spearman RSA against scipy on a subsample
  rsa_50k     an RDM of 50,000 images on the device, sampled pairs against float64 numpy
              (the panel-start arithmetic that once wrapped past 46,341 images)
Run through benchmarks/gpu_check.sh (which installs what the GPU machine lacks). --smoke checks
this script on a CPU: forced host devices stand in for GPUs, the train runs use the
:fast_smoke config and the RDMs are small.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOSS_TOLERANCE = 0.02  # relative, between 1 device and all of them, over the fixed steps
STEP_LINE = re.compile(r"step (\d+)/\d+: loss ([0-9.e+-]+|nan|inf)")


def _train(workdir: str, args, config: str, overrides: list[str], devices: int | None,
           timeout: int) -> dict:
  """Runs experiments.train_philnet; returns its logged losses, final metrics and wall time."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
  if devices is not None:
    if args.smoke:
      env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    else:
      env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in range(devices))
  command = [sys.executable, "-m", "experiments.train_philnet", f"--workdir={workdir}",
             f"--config=experiments/configs/philnet.py:{config}",
             f"--config.data_dir={args.data_dir}", *overrides]
  shutil.rmtree(workdir, ignore_errors=True)  # a leftover workdir would be resumed
  start = time.perf_counter()
  run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout, check=False)
  wall = time.perf_counter() - start
  with open(os.path.join(args.out, os.path.basename(workdir) + ".log"), "w") as log:
    log.write(run.stdout + run.stderr)
  if run.returncode:
    raise RuntimeError(f"train_philnet failed ({run.returncode}): {run.stderr[-1500:]}")
  losses = {int(s): float(l) for s, l in STEP_LINE.findall(run.stderr)}
  done = re.search(r"test (.*?); best", run.stdout)
  test = dict((k, float(v)) for k, v in re.findall(r"(\w+) ([0-9.e+-]+)", done.group(1)))
  return {"losses": losses, "test": test, "wall_s": wall}


def check_backend(args) -> str:
  import jax  # pylint: disable=g-import-not-at-top
  backend, count = jax.default_backend(), jax.local_device_count()
  wanted = "cpu" if args.smoke else "gpu"
  assert backend == wanted, f"default backend {backend!r}, expected {wanted!r}"
  assert count >= args.min_devices, f"{count} devices, expected at least {args.min_devices}"
  return f"{count} x {jax.devices()[0].device_kind}"


def _fixed_steps(args) -> list[str]:
  """A fixed number of steps (one epoch of fixed_steps batches)."""
  images = args.fixed_steps * args.fixed_batch
  # smoke: the tiny batches of :fast_smoke need a gentler learning rate to fall in 8 steps
  sizes = (["--config.learning_rate=0.01"] if args.smoke else
           ["--config.test_subset=1000", "--config.num_validation=1000"])
  return [f"--config.train_subset={images}", f"--config.batch_size={args.fixed_batch}",
          "--config.num_epochs=1", "--config.warmup_epochs=0.5",
          f"--config.log_every_steps={max(args.fixed_steps // 8, 1)}", *sizes]


def check_devices(args) -> str:
  import jax  # pylint: disable=g-import-not-at-top
  every = 2 if args.smoke else jax.local_device_count()
  config = "fast_smoke" if args.smoke else "fast"
  runs = {d: _train(os.path.join(args.work, f"devices_{d}"), args, config, _fixed_steps(args),
                    d, 600) for d in sorted({1, every})}
  one, all_ = runs[1]["losses"], runs[every]["losses"]
  assert one and one.keys() == all_.keys(), f"logged steps differ: {one} vs {all_}"
  worst = max(abs(one[s] - all_[s]) / abs(one[s]) for s in one)
  assert worst <= LOSS_TOLERANCE, f"losses differ by {worst:.3%} (1: {one}, {every}: {all_})"
  return f"1 vs {every} devices, {len(one)} logged losses within {worst:.2%}"


def check_bfloat16(args) -> str:
  config = "fast_smoke" if args.smoke else "fast"
  run = _train(os.path.join(args.work, "bfloat16"), args, config,
               _fixed_steps(args) + ["--config.dtype=bfloat16"], None, 600)
  losses = [run["losses"][s] for s in sorted(run["losses"])]
  assert losses and all(np.isfinite(losses)), f"losses {losses}"
  assert losses[-1] < losses[0], f"bfloat16 loss did not fall: {losses}"
  return f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, test accuracy {run['test']['accuracy']:.3f}"


def check_rsa(args) -> str:
  import scipy.spatial.distance as ssd  # pylint: disable=g-import-not-at-top
  import scipy.stats  # pylint: disable=g-import-not-at-top
  import align_jax.rsa as rsa  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  n = 1000 if args.smoke else 3000
  a = rng.standard_normal((n, 64)).astype(np.float32)
  b = (a[:, :16] + rng.standard_normal((n, 16))).astype(np.float32)
  rdm_a = np.asarray(rsa.rdm(a, "correlation"))
  reference = ssd.pdist(a.astype(np.float64), "correlation")
  np.testing.assert_allclose(rdm_a, reference, rtol=1e-4, atol=1e-5)
  got = rsa.compare(rdm_a, np.asarray(rsa.rdm(b, "correlation")), "spearman")
  expected = scipy.stats.spearmanr(reference, ssd.pdist(b.astype(np.float64),
                                                        "correlation")).statistic
  assert abs(got - expected) < 1e-4, f"spearman {got} vs scipy {expected}"
  return f"n = {n}: RDM within 1e-4 of scipy, Spearman {got:.5f} vs {expected:.5f}"


def check_rsa_50k(args) -> str:
  import align_jax.rsa as rsa  # pylint: disable=g-import-not-at-top
  n = 3000 if args.smoke else 50_000
  x = np.random.default_rng(1).standard_normal((n, 8)).astype(np.float32)
  start = time.perf_counter()
  condensed = np.asarray(rsa.rdm(x, "euclidean"))
  seconds = time.perf_counter() - start
  rng = np.random.default_rng(2)
  i = np.concatenate([rng.integers(0, n - 1, 20_000), np.arange(n - 60, n - 1)])
  j = np.array([rng.integers(a + 1, n) for a in i[:20_000]] + [n - 1] * 59)
  index = i * n - i * (i + 1) // 2 + (j - i - 1)  # int64
  expected = np.linalg.norm(x[i].astype(np.float64) - x[j], axis=1)
  assert condensed.shape == (n * (n - 1) // 2,)
  np.testing.assert_allclose(condensed[index], expected, rtol=1e-3, atol=1e-3)
  return f"n = {n:,}: {len(index):,} sampled pairs (the last rows included) match, {seconds:.1f} s"


def check_fast(args) -> str:
  config = "fast_smoke" if args.smoke else "fast"
  run = _train(os.path.join(args.work, "fast"), args, config, [], None, 1200)
  test = run["test"]
  return (f"test accuracy {test['accuracy']:.4f}, with test-time augmentation "
          f"{test.get('tta_accuracy', float('nan')):.4f}, {run['wall_s']:.0f} s wall")


# The train runs come first: this process then holds little device memory while they run (it
# does not preallocate), and the RDMs come after them.
CHECKS = [("backend", check_backend), ("devices", check_devices), ("bfloat16", check_bfloat16),
          ("fast", check_fast), ("rsa", check_rsa), ("rsa_50k", check_rsa_50k)]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", required=True, help="a CIFAR-10 data directory")
  parser.add_argument("--out", default="gpu_check_out", help="logs and results.json go here")
  parser.add_argument("--work", default="/tmp/gpu_check_runs", help="training workdirs")
  parser.add_argument("--smoke", action="store_true", help="check this script on a CPU")
  parser.add_argument("--min_devices", type=int, default=1, help="devices the GPU must have")
  parser.add_argument("--fixed_steps", type=int, default=40, help="steps of the device check")
  parser.add_argument("--fixed_batch", type=int, default=256, help="its global batch")
  parser.add_argument("--only", default="", help="comma-separated checks (default: all)")
  args = parser.parse_args()
  if args.smoke:
    args.fixed_steps, args.fixed_batch = 8, 16
    from align_jax.runtime import backend  # pylint: disable=g-import-not-at-top
    backend.rsa_on_host = lambda: False  # the RSA checks take the accelerator path on the CPU
  os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # before JAX starts here
  os.makedirs(args.out, exist_ok=True)
  os.makedirs(args.work, exist_ok=True)
  only = [c for c in args.only.split(",") if c]
  rows, started = [], time.perf_counter()
  for name, check in CHECKS:
    if only and name not in only:
      continue
    start = time.perf_counter()
    print(f"== {name} ==", flush=True)
    try:
      rows.append((name, "pass", check(args)))
    except Exception as error:  # pylint: disable=broad-except
      rows.append((name, "FAIL", " ".join(str(error).split())[:300]))
    rows[-1] += (time.perf_counter() - start,)
    print(f"   {rows[-1][1]}: {rows[-1][2]} ({rows[-1][3]:.0f} s)", flush=True)
  print(f"\n| check | result | detail | s |\n|---|---|---|---|")
  for name, result, detail, seconds in rows:
    print(f"| {name} | {result} | {detail} | {seconds:.0f} |")
  print(f"total {time.perf_counter() - started:.0f} s")
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump([dict(zip(("check", "result", "detail", "seconds"), r)) for r in rows], f, indent=1)
  return int(any(result != "pass" for _, result, _, _ in rows))


if __name__ == "__main__":
  sys.exit(main())
