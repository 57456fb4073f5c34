"""Split-half noise ceiling of a human RDM built from annotator counts.

For each split, every image's annotators are divided at random into halves of floor(n/2) and
ceil(n/2) (a multivariate hypergeometric draw from its counts); a human RDM is built from each
half and the two are compared:
  r_half  = mean over splits of compare(rdm(half 1), rdm(half 2))
  r_full  = 2 r_half / (1 + r_half)   (Spearman-Brown: reliability of the full-data RDM)
  ceiling = sqrt(r_full)              (the highest correlation a model can expect with the
                                       full-data human RDM; "fraction of ceiling" = score / it)
"""

import dataclasses

import numpy as np

from align_jax.errors import InputError
from align_jax.rsa import comparison as compare_lib


@dataclasses.dataclass(frozen=True)
class NoiseCeiling:
  r_half: float  # mean split-half correlation
  r_half_std: float  # its standard deviation over splits
  r_half_splits: tuple[float, ...]
  r_full: float
  ceiling: float


def split_counts(counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Random halves of each row's annotators: floor(n/2) in the first, the rest in the second."""
  remaining_sample = counts.sum(axis=1) // 2
  remaining_pool = counts.sum(axis=1)
  first = np.zeros_like(counts)
  for c in range(counts.shape[1] - 1):  # marginal draws, one class at a time
    first[:, c] = rng.hypergeometric(counts[:, c], remaining_pool - counts[:, c],
                                     remaining_sample)
    remaining_sample -= first[:, c]
    remaining_pool -= counts[:, c]
  first[:, -1] = remaining_sample
  return first, counts - first


def noise_ceiling(counts, metric: str = "correlation", method: str = "spearman",
                  n_splits: int = 10, seed: int = 0) -> NoiseCeiling:
  """Split-half reliability of the human RDM from counts [n_images, classes] (see module)."""
  counts = np.asarray(counts)
  if counts.ndim != 2 or np.any(counts < 0) or not np.all(counts == np.round(counts)):
    raise InputError("counts must be a 2-D array of non-negative integer annotator counts.")
  counts = counts.astype(np.int64)
  if np.any(counts.sum(axis=1) < 2):
    raise InputError("Every image needs at least 2 annotators to split them in halves.")
  if n_splits < 1:
    raise InputError(f"n_splits={n_splits} must be >= 1.")
  values = []
  for split in range(n_splits):
    first, second = split_counts(counts, np.random.default_rng([seed, split]))
    halves = [h / h.sum(axis=1, keepdims=True) for h in (first, second)]
    values.append(compare_lib.rsa_score(*halves, metric=metric, method=method))
  r_half = float(np.mean(values))
  r_full = 2 * r_half / (1 + r_half)
  return NoiseCeiling(r_half=r_half, r_half_std=float(np.std(values)),
                      r_half_splits=tuple(values), r_full=r_full,
                      ceiling=float(np.sqrt(max(r_full, 0.0))))
