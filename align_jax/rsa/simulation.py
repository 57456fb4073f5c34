"""Annotator data with known truths, for validating estimators (noise ceilings, intervals).

A truth (one label distribution per image) is built from real annotator counts, then each
image's annotators are simulated with its real number of annotators (multinomial):
  smooth<a>   truth = (counts + a) / (n + classes * a): a = 0 keeps unanimous images one-hot;
              larger a spreads mass over every class (a pseudo-count, or lapse, model)
  dirichlet   truth ~ Dirichlet(20 * the mean distribution of the image's majority class)
"""

import numpy as np

from align_jax.errors import InputError
from align_jax.rsa import annotators


def simulate(real_counts: np.ndarray, regime: str, n: int,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(truth [n, classes], simulated counts [n, classes]) for a seeded random subset of n images
  of `real_counts` [N, classes], each with its real number of annotators (see module)."""
  rng = np.random.default_rng([seed, 17])
  idx = rng.choice(len(real_counts), n, replace=False)
  counts, classes = real_counts[idx], real_counts.shape[1]
  if regime.startswith("smooth"):
    a = float(regime[len("smooth"):])
    truth = (counts + a) / (counts.sum(axis=1, keepdims=True) + classes * a)
  elif regime == "dirichlet":
    majority = np.argmax(real_counts, axis=1)
    means = np.stack([real_counts[majority == k].sum(0) + 1.0 for k in range(classes)])
    means /= means.sum(axis=1, keepdims=True)
    truth = np.stack([rng.dirichlet(20 * means[k]) for k in majority[idx]])
  else:
    raise InputError(f"Unknown regime {regime!r}: use 'smooth<a>' (e.g. smooth0.25) or "
                     "'dirichlet'.")
  return truth, annotators.multinomial_rows(counts.sum(axis=1), truth, rng)
