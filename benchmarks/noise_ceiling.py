"""Validates noise-ceiling estimators against simulations whose true label distributions are known.

For each regime (align_jax/rsa/simulation.py) a truth is built from the real CIFAR-10H counts,
annotators are simulated with each image's real number of annotators (multinomial), and every
estimator is compared with the perfect model's score, compare(rdm(truth), rdm(simulated counts
/ n)).

Prints one row per regime x metric x method: the perfect model's score, Spearman-Brown's
error, the posterior-calibrated ceiling's error, whether its band holds the perfect score, and
seconds per ceiling (both methods share one call). Example (the table in docs/rsa_statistics.md):

  python benchmarks/noise_ceiling.py --data_dir=$ALIGN_JAX_DATA_DIR --images=2000 --datasets=3
"""

import os
import time

import numpy as np
from absl import app, flags

from align_jax.rsa import annotators, simulation
import align_jax.rsa as rsa

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", os.environ.get("ALIGN_JAX_DATA_DIR", ""),
                    "Data directory holding cifar10h/cifar10h-counts.npy.")
flags.DEFINE_integer("images", 2000, "Images per simulated dataset (drawn from the 10,000).")
flags.DEFINE_integer("datasets", 3, "Simulated datasets per regime (errors are averaged).")
flags.DEFINE_list("regimes", ["smooth0", "smooth0.25", "smooth0.5", "smooth1", "smooth2",
                              "dirichlet"], "Truth regimes (see the module docstring).")
flags.DEFINE_list("metrics", ["correlation", "euclidean"], "RDM metrics.")
METHODS = ["spearman", "rho-a"]


def main(argv):
  del argv
  real = np.load(os.path.join(FLAGS.data_dir, "cifar10h", "cifar10h-counts.npy"))
  print("| regime | metric | method | perfect model | Spearman-Brown error | ceiling error | "
        "band holds it | s per ceiling |")
  print("|---|---|---|---|---|---|---|---|")
  for regime in FLAGS.regimes:
    for metric in FLAGS.metrics:
      rows = {m: [] for m in METHODS}
      seconds = []
      for seed in range(FLAGS.datasets):
        truth, counts = simulation.simulate(real, regime, FLAGS.images, seed)
        observed = rsa.rdm(annotators.distributions(counts), metric)
        perfect = rsa.compare_methods(rsa.rdm(truth, metric), observed, METHODS)
        start = time.perf_counter()
        ceilings = rsa.noise_ceilings(counts, metric, METHODS, seed=seed)
        seconds.append(time.perf_counter() - start)
        for m in METHODS:
          c = ceilings[m]
          rows[m].append((perfect[m], c.spearman_brown - perfect[m], c.ceiling - perfect[m],
                          c.band[0] <= perfect[m] <= c.band[1]))
      for m in METHODS:
        r = np.asarray(rows[m], np.float64)
        print(f"| {regime} | {metric} | {m} | {r[:, 0].mean():.3f} | {r[:, 1].mean():+.3f} | "
              f"{r[:, 2].mean():+.3f} (sd {r[:, 2].std():.3f}) | {int(r[:, 3].sum())}/{len(r)} | "
              f"{np.mean(seconds):.1f} |", flush=True)


if __name__ == "__main__":
  app.run(main)
