"""RSA speed and memory, align_jax against scipy and rsatoolbox, each in its own subprocess.

Reference case: features X = standard normal [n=10,000, 512] float32 (seed 0) vs the
CIFAR-10H probabilities [10,000, 10]; both RDMs euclidean; Spearman; end to end (features ->
both RDMs -> rho). Every contender runs in a fresh subprocess so each reports its own peak RSS;
times are medians of --repeats runs after one warm-up run (reported as "first call", which
includes JAX compilation). The error column is |rho - scipy's rho| on the same inputs.

  python benchmarks/rsa_bench.py --data_dir=DIR              # the table in docs/benchmarks.md
  python benchmarks/rsa_bench.py --data_dir=DIR --n=30000 --contenders=align_jax_fused

Needs `pip install -e .[bench]` for rsatoolbox (skipped with a note when missing).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

CONTENDERS = ("align_jax_fused", "align_jax_two_step", "scipy", "rsatoolbox")
CASES = ("reference", "correlation", "ties")


def _inputs(case: str, n: int, data_dir: str):
  """(features [n, 512] float32, human probabilities [n, 10], metric)."""
  features = np.random.default_rng(0).standard_normal((n, 512)).astype(np.float32)
  if case == "ties":  # 66% unanimous images: millions of exactly tied human distances
    rng = np.random.default_rng(1)
    counts = rng.multinomial(50, rng.dirichlet(np.full(10, 0.01), n))
    return features, counts / 50.0, "euclidean"
  path = os.path.join(os.path.expanduser(data_dir), "cifar10h", "cifar10h-probs.npy")
  if not os.path.isfile(path):
    sys.exit(f"error: {path} not found; pass --data_dir=DIR of a data directory (docs/data.md).")
  probs = np.load(path, allow_pickle=False)
  rows = np.arange(n) if n <= len(probs) else np.random.default_rng(2).integers(0, len(probs), n)
  return features, probs[rows], "euclidean" if case == "reference" else "correlation"


def _run_once(contender: str, features, human, metric: str) -> float:
  if contender.startswith("align_jax"):
    import align_jax.rsa as rsa  # pylint: disable=g-import-not-at-top
    if contender == "align_jax_fused":
      return rsa.rsa_score(features, human, metric, "spearman")
    return rsa.compare(rsa.rdm(features, metric), rsa.rdm(human, metric), "spearman")
  if contender == "scipy":
    import scipy.spatial.distance as ssd  # pylint: disable=g-import-not-at-top
    import scipy.stats  # pylint: disable=g-import-not-at-top
    return float(scipy.stats.spearmanr(ssd.pdist(features, metric),
                                       ssd.pdist(human, metric)).statistic)
  import rsatoolbox  # pylint: disable=g-import-not-at-top
  rdms = [rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=metric)
          for x in (features, human)]
  return float(rsatoolbox.rdm.compare(rdms[0], rdms[1], method="spearman")[0, 0])


def worker(contender: str, case: str, n: int, repeats: int, data_dir: str) -> None:
  """Runs one contender and prints a JSON line with times, rho and peak RSS."""
  features, human, metric = _inputs(case, n, data_dir)
  start = time.perf_counter()
  rho = _run_once(contender, features, human, metric)
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    _run_once(contender, features, human, metric)
    times.append(time.perf_counter() - start)
  print(json.dumps({"rho": rho, "first": first, "median": statistics.median(times) if times
                    else first, "peak_rss_gib": resource.getrusage(
                        resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", default=os.environ.get("ALIGN_JAX_DATA_DIR", ""),
                      help="data directory holding cifar10h/cifar10h-probs.npy")
  parser.add_argument("--n", type=int, default=10_000, help="number of images")
  parser.add_argument("--cases", default="reference", help=f"comma list of {CASES}")
  parser.add_argument("--contenders", default=",".join(CONTENDERS),
                      help=f"comma list of {CONTENDERS}")
  parser.add_argument("--repeats", type=int, default=3,
                      help="timed runs after the warm-up (scipy and rsatoolbox: 1)")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    contender, case = args.worker.split(":")
    worker(contender, case, args.n, args.repeats, args.data_dir)
    return
  contenders = args.contenders.split(",")
  for name in contenders + args.cases.split(","):
    if name not in CONTENDERS + CASES:
      sys.exit(f"error: unknown contender or case {name!r}; choose from {CONTENDERS + CASES}.")
  print(f"n={args.n} images, {args.n * (args.n - 1) // 2:,} pairs, Spearman, "
        f"{os.cpu_count()} CPUs\n")
  print("| case | contender | time s (median) | first call s | peak RSS GiB | rho | "
        "abs error vs scipy | rsatoolbox time / this |")
  print("|---|---|---|---|---|---|---|---|")
  for case in args.cases.split(","):
    rows = {}
    for contender in contenders:
      repeats = args.repeats if contender.startswith("align_jax") else min(args.repeats, 1)
      print(f"running {contender} on {case}...", file=sys.stderr, flush=True)
      proc = subprocess.run(
          [sys.executable, __file__, f"--worker={contender}:{case}", f"--n={args.n}",
           f"--repeats={repeats}", f"--data_dir={args.data_dir}"],
          capture_output=True, text=True, check=False)
      lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
      if proc.returncode or not lines:
        print(f"  {contender} failed or is not installed: {proc.stderr.strip()[-300:]}",
              file=sys.stderr)
        continue
      rows[contender] = json.loads(lines[-1])
    reference = rows.get("scipy", {}).get("rho")
    baseline = rows.get("rsatoolbox", {}).get("median")
    for contender, r in rows.items():
      error = "n/a" if reference is None else f"{abs(r['rho'] - reference):.1e}"
      ratio = "n/a" if baseline is None else f"{baseline / r['median']:.1f}x"
      print(f"| {case} | {contender} | {r['median']:.2f} | {r['first']:.2f} | "
            f"{r['peak_rss_gib']:.2f} | {r['rho']:.10f} | {error} | {ratio} |", flush=True)


if __name__ == "__main__":
  main()
