"""The alignment statistics of a 5-target study at n = 10,000: today's per-call path vs the
joint engine, in one invocation, extrapolated to full counts.

Real CIFAR-10H human RDM (correlation distance) and CI source `images+annotators` (the
defaults of experiments/configs/align.py), methods Spearman + rho-a, 5 synthetic model RDMs
(features that follow the human label distributions through noise), all 10 pairs compared.
  expanded: per target a bootstrap that re-ranks the expanded multiset of every resample and a
    permutation test per method; per pair a paired bootstrap (resampling again). One target
    and one pair are timed (every target and pair costs the same) and multiplied.
  joint: rsa.resample_jointly over all targets: same draws, scores and paired differences.
Both are extrapolated to --full resamples and permutations from per-resample costs. The joint
path runs first, so the peak RSS printed after it is its own.

  python benchmarks/rsa_joint.py --data_dir=DIR [--images=10000] [--resamples=20]
      [--expanded_resamples=3] [--full=1000]
"""

import argparse
import os
import resource
import time

import numpy as np

from align_jax.data import cifar10h
import align_jax.rsa as rsa

METHODS = ["spearman", "rho-a"]


def _targets(probs: np.ndarray, count: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  out = {}
  for t in range(count):
    noise = 0.05 * (t + 1)
    features = np.concatenate([probs + noise * rng.standard_normal(probs.shape),
                               rng.standard_normal((len(probs), 54))], axis=1)
    out[f"model{t}"] = np.asarray(rsa.rdm(features.astype(np.float32), "correlation"))
  return out


def _peak_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", default=os.environ.get("ALIGN_JAX_DATA_DIR", ""),
                      help="data directory holding cifar10h/ (else downloaded)")
  parser.add_argument("--images", type=int, default=10_000, help="first n CIFAR-10H images")
  parser.add_argument("--targets", type=int, default=5, help="model/layer RDMs")
  parser.add_argument("--resamples", type=int, default=20,
                      help="bootstrap resamples and permutations timed on the joint engine")
  parser.add_argument("--expanded_resamples", type=int, default=3,
                      help="resamples and permutations timed on the expanded path")
  parser.add_argument("--full", type=int, default=1000,
                      help="resample and permutation counts extrapolated to")
  args = parser.parse_args()
  probs, counts = cifar10h.load_cifar10h(args.data_dir)
  probs, counts = probs[:args.images], counts[:args.images]
  human = np.asarray(rsa.human_rdm(probs, "correlation"))
  annotators = rsa.HumanAnnotators(counts, "correlation")
  targets = _targets(probs, args.targets)
  pairs = args.targets * (args.targets - 1) // 2
  base_gib = _peak_gib()
  print(f"{args.images:,} images, {args.targets} targets, {pairs} pairs; RDMs built "
        f"(peak RSS so far {base_gib:.1f} GiB)", flush=True)

  costs = {}
  for count in (1, args.targets):
    start = time.perf_counter()
    result = rsa.resample_jointly(dict(list(targets.items())[:count]), human, METHODS,
                                  n_bootstrap=args.resamples, n_permutations=args.resamples,
                                  seed=0, human_counts=counts, metric="correlation")
    wall = time.perf_counter() - start
    setup = wall - args.resamples * (result.seconds_per_resample
                                     + result.seconds_per_permutation)
    costs[count] = (result.seconds_per_resample, result.seconds_per_permutation, setup)
    print(f"joint, {count} target(s): {result.seconds_per_resample:.2f} s per resample, "
          f"{result.seconds_per_permutation:.2f} s per permutation, {setup:.1f} s setup "
          f"(sorts, estimates); peak RSS {_peak_gib():.1f} GiB", flush=True)
  joint_gib = _peak_gib()
  boot, perm, setup = costs[args.targets]
  joint_full = setup + args.full * (boot + perm)
  marginal = (costs[args.targets][0] - costs[1][0]) / max(1, args.targets - 1)

  r = args.expanded_resamples
  one = rsa.bootstrap_methods(targets["model0"], human, METHODS, n_resamples=r, seed=0,
                              human=annotators, engine="expanded")["spearman"]
  permutation_seconds = {}
  for count in (1, r + 1):  # set-up (ranking both RDMs) apart from the cost per permutation
    start = time.perf_counter()
    for method in METHODS:
      rsa.permutation_test(targets["model0"], human, method, n_permutations=count, seed=0,
                           engine="expanded")
    permutation_seconds[count] = time.perf_counter() - start  # both methods
  per_permutation = (permutation_seconds[r + 1] - permutation_seconds[1]) / r
  permutation_setup = permutation_seconds[1] - per_permutation
  start = time.perf_counter()
  rsa.paired_bootstrap(targets["model0"], targets["model1"], human, METHODS[0],
                       n_resamples=r, seed=0, human=annotators, engine="expanded")
  per_pair = (time.perf_counter() - start) / r
  expanded_full = (args.targets * permutation_setup + args.full * (
      args.targets * (one.seconds_per_resample + per_permutation) + pairs * per_pair))
  print(f"expanded: {one.seconds_per_resample:.2f} s per resample per target, "
        f"{per_permutation:.2f} s per permutation per target (both methods; "
        f"{permutation_setup:.1f} s set-up), {per_pair:.2f} s per resample per pair", flush=True)
  print()
  print(f"| path | per bootstrap resample (all targets and pairs) | per permutation | "
        f"{args.full:,} resamples + {args.full:,} permutations |")
  print("|---|---|---|---|")
  print(f"| expanded (per call) | {args.targets * one.seconds_per_resample + pairs * per_pair:.1f}"
        f" s | {args.targets * per_permutation:.1f} s | {expanded_full / 3600:.1f} h |")
  print(f"| joint | {boot:.2f} s | {perm:.2f} s | {joint_full / 60:.0f} min |")
  print(f"\njoint is {expanded_full / joint_full:.1f}x faster end to end; marginal cost of one "
        f"more target per resample {marginal:.2f} s (expanded: "
        f"{one.seconds_per_resample:.2f} s, plus {per_pair:.2f} s for each pair it adds); peak "
        f"RSS of the joint path {joint_gib:.1f} GiB (RDMs alone {base_gib:.1f} GiB).")


if __name__ == "__main__":
  main()
