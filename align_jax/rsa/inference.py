"""Inference over images: bootstrap CIs, a paired bootstrap for model differences, permutations.

Bootstrap (as rsatoolbox): resample n images with replacement; a pair of an image with its
own copy is dropped, and a pair of distinct originals drawn m_i and m_j times counts
m_i * m_j times. Each resample re-ranks ~n^2/2 pairs with the exact kernel, one resample at
a time (a vmap over resamples would need resamples x pairs memory); `seconds_per_resample` in
the result reports the cost (about 4 s at n = 10,000 on 2 CPU cores).
Permutation test: permute the image labels of one RDM, p = (1 + #{null >= observed}) /
(1 + permutations), one-sided for "more similar than chance".
"""

import dataclasses
import time

import numpy as np
import scipy.spatial.distance as ssd
from absl import logging

from align_jax.errors import InputError
from align_jax.rsa import checks, ranks
from align_jax.rsa import comparison as compare_lib


@dataclasses.dataclass(frozen=True)
class BootstrapResult:
  estimate: float  # on all images
  ci_low: float
  ci_high: float
  samples: np.ndarray  # [n_resamples]
  seconds_per_resample: float


@dataclasses.dataclass(frozen=True)
class PairedResult:
  difference: float  # score(a1, b) - score(a2, b) on all images
  ci_low: float
  ci_high: float
  p_value: float  # two-sided bootstrap p-value of "no difference"
  samples: np.ndarray


@dataclasses.dataclass(frozen=True)
class PermutationResult:
  estimate: float
  p_value: float
  null: np.ndarray  # [n_permutations]


def _condensed(rdms: dict[str, object]) -> tuple[dict[str, np.ndarray], int]:
  vectors = {k: checks.as_condensed(v, k) for k, v in rdms.items()}
  sizes = {v.size for v in vectors.values()}
  if len(sizes) != 1:
    raise InputError(f"RDMs differ in length ({sorted(sizes)}); they must cover the same images.")
  return vectors, checks.num_images(sizes.pop())


def _check_counts(n_resamples: int, ci: float) -> None:
  if n_resamples < 1:
    raise InputError(f"n_resamples={n_resamples} must be >= 1.")
  if not 0 < ci < 1:
    raise InputError(f"ci={ci} must be in (0, 1), e.g. 0.95.")


def resample_pairs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(condensed indices of the distinct drawn pairs, their multiplicities) for one resample."""
  drawn, multiplicity = np.unique(rng.integers(0, n, n), return_counts=True)
  i, j = np.triu_indices(len(drawn), 1)
  weights = multiplicity[i] * multiplicity[j]
  return checks.condensed_index(drawn[i], drawn[j], n), weights


def _report(what: str, done: int, total: int, start: float) -> None:
  """Logs progress about every 10% of a long loop, with the time left."""
  if done % max(1, total // 10) == 0 or done == total:
    each = (time.perf_counter() - start) / done
    logging.info("%s: %d/%d, %.2f s each, ~%.0f s left", what, done, total, each,
                 each * (total - done))


def _resampled_scores(vectors, n, method, n_resamples, seed, score_fn):
  """score_fn(resampled vectors, method) for each resample: [n_resamples, ...] and s/resample."""
  rng = np.random.default_rng(seed)
  samples = []
  start = time.perf_counter()
  for r in range(n_resamples):
    index, weights = resample_pairs(n, rng)
    samples.append(score_fn({k: np.repeat(v[index], weights) for k, v in vectors.items()}, method))
    _report("bootstrap resamples", r + 1, n_resamples, start)
  return np.asarray(samples, np.float64), (time.perf_counter() - start) / n_resamples


def bootstrap(rdm_a, rdm_b, method: str = "spearman", *, n_resamples: int = 1000,
              seed: int = 0, ci: float = 0.95) -> BootstrapResult:
  """Percentile CI of compare(rdm_a, rdm_b, method) over bootstrap resamples of images."""
  return bootstrap_methods(rdm_a, rdm_b, [method], n_resamples=n_resamples, seed=seed,
                           ci=ci)[method]


def bootstrap_methods(rdm_a, rdm_b, methods, *, n_resamples: int = 1000, seed: int = 0,
                      ci: float = 0.95) -> dict[str, BootstrapResult]:
  """bootstrap() for several methods over the same resamples (identical to calling it per method
  with the same seed); the rank methods share each resample's ranking."""
  _check_counts(n_resamples, ci)
  methods = list(methods)
  vectors, n = _condensed({"a": rdm_a, "b": rdm_b})
  score = lambda v, ms: list(compare_lib.compare_methods(v["a"], v["b"], ms).values())
  samples, seconds = _resampled_scores(vectors, n, methods, n_resamples, seed, score)
  estimates = score(vectors, methods)
  out = {}
  for k, method in enumerate(methods):
    low, high = np.quantile(samples[:, k], [(1 - ci) / 2, (1 + ci) / 2])
    out[method] = BootstrapResult(estimates[k], float(low), float(high), samples[:, k], seconds)
  return out


def paired_bootstrap(rdm_a1, rdm_a2, rdm_b, method: str = "spearman", *,
                     n_resamples: int = 1000, seed: int = 0, ci: float = 0.95) -> PairedResult:
  """CI and p-value of score(a1, b) - score(a2, b), resampling the same images for both."""
  _check_counts(n_resamples, ci)
  vectors, n = _condensed({"a1": rdm_a1, "a2": rdm_a2, "b": rdm_b})
  diff = lambda v, m: (compare_lib.compare(v["a1"], v["b"], m)
                       - compare_lib.compare(v["a2"], v["b"], m))
  samples, _ = _resampled_scores(vectors, n, method, n_resamples, seed, diff)
  low, high = np.quantile(samples, [(1 - ci) / 2, (1 + ci) / 2])
  tail = min(np.mean(samples <= 0), np.mean(samples >= 0))
  p_value = min(1.0, 2 * (tail * n_resamples + 1) / (n_resamples + 1))
  return PairedResult(diff(vectors, method), float(low), float(high), float(p_value), samples)


def _rank_squares(a: np.ndarray, b: np.ndarray):
  """Square float64 matrices of the centred ranks of two condensed RDMs, and their sums of
  squares: ranks do not change when images are permuted, so each permutation only regathers."""
  squares, sums = [], []
  for v in (a, b):
    c, ties = ranks.ranks_of_words(ranks.pack_chunks(compare_lib.key_fn(v), ranks.index_payload,
                                                     len(v)))
    squares.append(ssd.squareform(c.astype(np.float64), checks=False))
    sums.append(ranks.sum_of_squares(len(v), ties))
  return squares, sums


def permutation_test(rdm_a, rdm_b, method: str = "spearman", *, n_permutations: int = 1000,
                     seed: int = 0) -> PermutationResult:
  """p-value of compare(rdm_a, rdm_b) against permutations of rdm_b's image labels.

  For the rank methods each permutation costs one gather of the n x n rank matrix and one dot
  product (ranks are permutation invariant); other methods recompute compare().
  """
  if n_permutations < 1:
    raise InputError(f"n_permutations={n_permutations} must be >= 1.")
  vectors, n = _condensed({"a": rdm_a, "b": rdm_b})
  observed = compare_lib.compare(vectors["a"], vectors["b"], method)
  rng = np.random.default_rng(seed)
  null = np.empty(n_permutations)
  if method in compare_lib.RANK_METHODS:
    (square_a, square_b), (ss_a, ss_b) = _rank_squares(vectors["a"], vectors["b"])
    num = len(vectors["a"])
    start = time.perf_counter()
    for p in range(n_permutations):
      perm = rng.permutation(n)
      cross = 0.5 * float(np.dot(square_a.ravel(), square_b[np.ix_(perm, perm)].ravel()))
      null[p] = compare_lib.finish(method, cross, ss_a, ss_b, num)
      _report("permutations", p + 1, n_permutations, start)
  else:
    i, j = np.triu_indices(n, 1)
    start = time.perf_counter()
    for p in range(n_permutations):
      perm = rng.permutation(n)
      pi, pj = perm[i], perm[j]
      index = checks.condensed_index(np.minimum(pi, pj), np.maximum(pi, pj), n)
      null[p] = compare_lib.compare(vectors["a"], vectors["b"][index], method)
      _report("permutations", p + 1, n_permutations, start)
  p_value = (1 + np.sum(null >= observed)) / (1 + n_permutations)
  return PermutationResult(observed, float(p_value), null)
