"""Annotator counts behind a human RDM: splits, redraws and a latent-class prior.

counts [n_images, classes] are how many annotators chose each class for each image (CIFAR-10H:
47-63 per image). Each image's annotators are treated as independent draws from its true label
distribution p_i (multinomial). Three operations build on that:
- `subsample`: a random subset of each image's annotators (multivariate hypergeometric), e.g.
  disjoint halves for split-half reliability;
- `redraw`: a fresh multinomial draw of the same number of annotators from each image's observed
  distribution (the annotator level of a two-level bootstrap);
- `LatentClassPrior`: an empirical-Bayes prior over the p_i, a mixture of K point masses
  ("latent classes") fitted by EM, and draws of p_i from its posterior given the counts. No
  library fits a latent-class multinomial mixture on count rows with multiplicities, so the
  few lines of EM are written here.
"""

import dataclasses

import numpy as np

from align_jax.errors import InputError


def check_counts(counts, min_annotators: int = 1) -> np.ndarray:
  """Non-negative integer counts [n_images, classes] with >= min_annotators per row, as int64."""
  counts = np.asarray(counts)
  if counts.ndim != 2 or counts.shape[1] < 2:
    raise InputError(f"Annotator counts must be [n_images, classes]; got shape {counts.shape}.")
  if not np.all(np.isfinite(counts)) or np.any(counts < 0) or not np.all(
      counts == np.round(counts)):
    raise InputError("Annotator counts must be non-negative integers.")
  counts = counts.astype(np.int64)
  short = np.flatnonzero(counts.sum(axis=1) < min_annotators)
  if short.size:
    raise InputError(f"Images {short[:5].tolist()} have fewer than {min_annotators} annotators; "
                     f"this needs at least {min_annotators} per image.")
  return counts


def subsample(counts: np.ndarray, sizes: np.ndarray,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(a random `sizes[i]` of row i's annotators, the rest), drawn without replacement."""
  remaining_sample = np.asarray(sizes, np.int64).copy()
  remaining_pool = counts.sum(axis=1)
  first = np.zeros_like(counts)
  for c in range(counts.shape[1] - 1):  # marginal draws, one class at a time
    first[:, c] = rng.hypergeometric(counts[:, c], remaining_pool - counts[:, c],
                                     remaining_sample)
    remaining_sample -= first[:, c]
    remaining_pool -= counts[:, c]
  first[:, -1] = remaining_sample
  return first, counts - first


def split_halves(counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Random halves of each row's annotators: floor(n/2) in the first, the rest in the second."""
  return subsample(counts, counts.sum(axis=1) // 2, rng)


def multinomial_rows(totals: np.ndarray, probs: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
  """One multinomial draw of totals[i] annotators from probs[i] per row: int64 [n, classes]."""
  remaining = np.asarray(totals, np.int64).copy()
  left = np.ones(len(probs))
  out = np.zeros(probs.shape, np.int64)
  for c in range(probs.shape[1] - 1):  # conditional binomials, one class at a time
    share = np.clip(probs[:, c] / np.maximum(left, 1e-300), 0.0, 1.0)
    out[:, c] = rng.binomial(remaining, share)
    remaining -= out[:, c]
    left -= probs[:, c]
  out[:, -1] = remaining
  return out


def redraw(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Each row's annotators drawn again, with replacement, from its own observed distribution."""
  totals = counts.sum(axis=1)
  return multinomial_rows(totals, counts / totals[:, None], rng)


def distributions(counts: np.ndarray) -> np.ndarray:
  """Label distributions (each row divided by its number of annotators), float64."""
  return counts / counts.sum(axis=1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class LatentClassPrior:
  """A prior over label distributions: atoms [K, classes] (rows sum to 1) with weights [K]."""
  atoms: np.ndarray
  weights: np.ndarray
  log_likelihood: float  # of the counts it was fitted to (multinomial coefficients omitted)
  iterations: int

  def log_posterior(self, counts: np.ndarray) -> np.ndarray:
    """[n, K] normalised log posterior probabilities of each atom given each row's counts."""
    logits = counts @ np.log(np.maximum(self.atoms, 1e-300)).T + np.log(self.weights)[None]
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

  def posterior_draw(self, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw of every row's label distribution from its posterior: [n, classes]."""
    cumulative = np.cumsum(np.exp(self.log_posterior(counts)), axis=1)
    u = rng.random((len(counts), 1)) * cumulative[:, -1:]
    return self.atoms[np.minimum((cumulative < u).sum(axis=1), len(self.atoms) - 1)]


def fit_latent_classes(counts: np.ndarray, k: int, seed: int, *, max_iter: int = 500,
                       tol: float = 1e-7) -> LatentClassPrior:
  """Maximum-likelihood mixture of k multinomial atoms for count rows, by EM (deterministic for
  a seed). Atoms start at k distinct rows (drawn by frequency, lightly smoothed); each atom is
  then the responsibility-weighted pooled distribution of the rows it explains, so atoms are
  smooth where the data are noisy and exactly one-hot where all their images are unanimous."""
  rows, multiplicity = np.unique(counts, axis=0, return_counts=True)
  rows = rows.astype(np.float64)
  totals = rows.sum(axis=1)
  k = int(min(k, len(rows)))
  rng = np.random.default_rng([seed, k])
  start = rng.choice(len(rows), k, replace=False, p=multiplicity / multiplicity.sum())
  atoms = (rows[start] + 0.1) / (totals[start, None] + 0.1 * rows.shape[1])
  weights = np.full(k, 1.0 / k)
  previous = -np.inf
  for iteration in range(1, max_iter + 1):
    logits = rows @ np.log(np.maximum(atoms, 1e-300)).T + np.log(np.maximum(weights, 1e-300))
    peak = logits.max(axis=1, keepdims=True)
    log_total = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
    likelihood = float(multiplicity @ log_total)
    responsibility = np.exp(logits - log_total[:, None]) * multiplicity[:, None]
    weights = responsibility.sum(axis=0) / multiplicity.sum()
    atoms = (responsibility.T @ rows) / np.maximum(responsibility.T @ totals, 1e-300)[:, None]
    if likelihood - previous <= tol * abs(likelihood):
      break
    previous = likelihood
  keep = weights > 1e-12
  return LatentClassPrior(atoms[keep], weights[keep] / weights[keep].sum(), likelihood, iteration)
