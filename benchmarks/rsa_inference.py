"""Cost and results of the RSA statistics on real CIFAR-10H (n = 10,000 images).

Reports the noise ceiling (posterior-calibrated, with the raw split-half r and Spearman-Brown
beside it) for correlation and euclidean human RDMs and the seconds per bootstrap resample (one
method, and Spearman + rho-a separately vs together) and per permutation at n = 10,000.

  python benchmarks/rsa_inference.py --data_dir=DIR [--splits=4] [--resamples=3]
"""

import argparse
import os
import time

import numpy as np

import align_jax.rsa as rsa
from align_jax.data import cifar10h


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", default=os.environ.get("ALIGN_JAX_DATA_DIR", ""),
                      help="data directory holding cifar10h/ (else downloaded)")
  parser.add_argument("--splits", type=int, default=4, help="noise-ceiling split halves")
  parser.add_argument("--resamples", type=int, default=3, help="timed bootstrap resamples")
  args = parser.parse_args()
  probs, counts = cifar10h.load_cifar10h(args.data_dir)
  for metric in ("correlation", "euclidean"):
    start = time.perf_counter()
    result = rsa.noise_ceiling(counts, metric, "spearman", n_splits=args.splits, seed=0)
    print(f"noise ceiling ({metric}, spearman, {args.splits} split halves): ceiling "
          f"{result.ceiling:.3f} (band {result.band[0]:.3f}-{result.band[1]:.3f}, "
          f"{result.latent_classes} latent classes); r_half {result.r_half:.3f}, "
          f"Spearman-Brown {result.spearman_brown:.3f} ({time.perf_counter() - start:.0f} s)",
          flush=True)
  features = np.random.default_rng(0).standard_normal((10_000, 512)).astype(np.float32)
  model_rdm, human_rdm = rsa.rdm(features, "correlation"), rsa.human_rdm(probs, "correlation")
  boot = rsa.bootstrap(model_rdm, human_rdm, n_resamples=args.resamples, seed=0)
  print(f"bootstrap: {boot.seconds_per_resample:.2f} s per resample at n=10,000 "
        f"(1,000 resamples: {boot.seconds_per_resample * 1000 / 60:.0f} min)", flush=True)
  rho_a = rsa.bootstrap(model_rdm, human_rdm, "rho-a", n_resamples=args.resamples, seed=0)
  both = rsa.bootstrap_methods(model_rdm, human_rdm, ["spearman", "rho-a"],
                               n_resamples=args.resamples, seed=0)["spearman"]
  separate = boot.seconds_per_resample + rho_a.seconds_per_resample
  print(f"bootstrap of spearman + rho-a: {separate:.2f} s per resample as two bootstraps, "
        f"{both.seconds_per_resample:.2f} s with bootstrap_methods (shared ranking): "
        f"{separate / both.seconds_per_resample:.2f}x", flush=True)
  start = time.perf_counter()
  rsa.permutation_test(model_rdm, human_rdm, n_permutations=args.resamples, seed=0)
  per = (time.perf_counter() - start) / args.resamples
  print(f"permutation test: ~{per:.2f} s per permutation at n=10,000", flush=True)


if __name__ == "__main__":
  main()
