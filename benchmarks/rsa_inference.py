"""The noise ceiling of the real CIFAR-10H (n = 10,000 images) and what it costs.

Reports the posterior-calibrated ceiling (with the raw split-half r and Spearman-Brown beside
it) for correlation and euclidean human RDMs. The cost of bootstraps and permutations is
benchmarks/rsa_joint.py's.

  python benchmarks/rsa_inference.py --data_dir=DIR [--splits=4]
"""

import argparse
import os
import time

from align_jax.data import cifar10h
import align_jax.rsa as rsa


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", default=os.environ.get("ALIGN_JAX_DATA_DIR", ""),
                      help="data directory holding cifar10h/ (else downloaded)")
  parser.add_argument("--splits", type=int, default=4, help="noise-ceiling split halves")
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


if __name__ == "__main__":
  main()
