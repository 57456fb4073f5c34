"""The noise ceiling of a human RDM built from annotator counts: what a perfect model would score.

The target: the score compare(rdm(p), rdm(c / n)) of the true label distributions p (a perfect
model) against the observed human RDM of c, the finite annotator counts. Spearman-Brown on
split halves (sqrt(2 r / (1 + r))) assumes additive, independent noise; RDMs of label
distributions violate that (sampling noise inflates small distances, shared across every pair
of an image), and in simulations with known truths it came out 0.01-0.21 too high.

Estimator ("posterior-calibrated"): an empirical-Bayes prior over p, a mixture of K latent
classes fitted to the counts by EM (annotators.fit_latent_classes), gives posterior draws p~
of every image's distribution, and the ceiling is the mean of compare(rdm(p~), rdm(c / n)).
The prior's complexity K decides the answer (too few atoms read low, too many read high), so K
is chosen where the model reproduces what can be observed: from half of each image's
annotators its posterior predicts the other half, and the predicted split-half correlation
compare(rdm(predicted B), rdm(A)) must match the observed compare(rdm(B), rdm(A)). K is searched
by doubling, then bisected; the ceiling is computed at the two bracketing K and interpolated
where the gap crosses zero. Every step uses all images: checking on a subset of images shifted
the gap and picked too few latent classes (by 0.05 in one simulation at n = 10,000).

Validated against known truths (smoothed CIFAR-10H and Dirichlet-generated distributions with
the real annotator numbers, both metrics, Spearman and rho-a; tests/test_reliability.py and
benchmarks/noise_ceiling.py): within ACCURACY of the perfect model's score on average in every
regime tried, where Spearman-Brown was up to 0.14 too high. `band` is the ceilings of the two
bracketing priors, widened to at least +-ACCURACY around the estimate: the range the
validation supports, not a guaranteed bound.
"""

import dataclasses
import time

import numpy as np
from absl import logging

from align_jax.errors import InputError
from align_jax.rsa import annotators
from align_jax.rsa import comparison as compare_lib
from align_jax.rsa import dissimilarity as rdm_lib

ESTIMATOR = "posterior-calibrated"
FIRST_K = 8  # latent classes of the first prior tried; doubled until the gap is >= 0
BISECTIONS = 2  # geometric bisections of the bracketing K interval
ACCURACY = 0.02  # the largest mean error tolerated in the validation simulations


@dataclasses.dataclass(frozen=True)
class NoiseCeiling:
  """The ceiling of one comparison method, with the split-half numbers it rests on."""
  ceiling: float  # the validated estimate: "fraction of ceiling" = score / ceiling
  band: tuple[float, float]  # bracketing priors' ceilings, at least ceiling -+ ACCURACY
  r_half: float  # mean split-half correlation compare(rdm(half 1), rdm(half 2))
  r_half_std: float  # its standard deviation over splits
  r_half_splits: tuple[float, ...]
  spearman_brown: float  # sqrt(2 r_half / (1 + r_half)): the assumption-based value, for reference
  latent_classes: tuple[int, int]  # the bracketing K
  calibration: tuple[tuple[int, float], ...]  # (K, predictive gap) of every prior tried
  estimator: str = ESTIMATOR


def spearman_brown(r_half: float) -> float:
  """sqrt of the Spearman-Brown full-data reliability 2 r / (1 + r) (0 when r <= 0)."""
  return float(np.sqrt(max(2 * r_half / (1 + r_half), 0.0)))


class _Calibration:
  """Priors with K latent classes: their ceilings and predictive gaps."""

  def __init__(self, counts, metric, methods, n_splits, seed, draws):
    self.counts, self.metric, self.methods, self.seed, self.draws = (counts, metric, methods,
                                                                    seed, draws)
    self.observed = rdm_lib.rdm(annotators.distributions(counts), metric)
    self.halves = [annotators.split_halves(counts, np.random.default_rng([seed, 1, s]))
                   for s in range(n_splits)]
    self.half_rdms = [rdm_lib.rdm(annotators.distributions(a), metric) for a, _ in self.halves]
    self.r_half = [self._scores(rdm_lib.rdm(annotators.distributions(b), metric), ha)
                   for (_, b), ha in zip(self.halves, self.half_rdms)]
    self.priors, self.gaps, self.ceilings = {}, {}, {}

  def _scores(self, a, b) -> dict[str, float]:
    return compare_lib.compare_methods(a, b, self.methods)

  def prior(self, k: int) -> annotators.LatentClassPrior:
    if k not in self.priors:
      self.priors[k] = annotators.fit_latent_classes(self.counts, k, self.seed)
    return self.priors[k]

  def gap(self, k: int) -> dict[str, float]:
    """{method: predicted - observed split-half score} for the prior with K latent classes."""
    if k not in self.gaps:
      start = time.perf_counter()
      prior, gaps = self.prior(k), []
      for split, ((a, b), half_rdm, observed) in enumerate(zip(self.halves, self.half_rdms,
                                                               self.r_half)):
        # The same random numbers for every K (common random numbers): gap(K) is smooth in K.
        rng = np.random.default_rng([self.seed, 2, split])
        predicted = annotators.multinomial_rows(b.sum(axis=1), prior.posterior_draw(a, rng), rng)
        score = self._scores(rdm_lib.rdm(annotators.distributions(predicted), self.metric),
                             half_rdm)
        gaps.append({m: score[m] - observed[m] for m in self.methods})
      self.gaps[k] = {m: float(np.mean([g[m] for g in gaps])) for m in self.methods}
      logging.debug("noise ceiling: %d latent classes, predictive gap %+.4f (%.1f s)",
                    len(prior.atoms), self.gaps[k][self.methods[0]],
                    time.perf_counter() - start)
    return self.gaps[k]

  def ceiling(self, k: int) -> dict[str, float]:
    """{method: mean score of posterior draws against the observed RDM}, all images."""
    if k not in self.ceilings:
      prior, rng = self.prior(k), np.random.default_rng([self.seed, 4, k])
      scores = [self._scores(rdm_lib.rdm(prior.posterior_draw(self.counts, rng), self.metric),
                             self.observed) for _ in range(self.draws)]
      self.ceilings[k] = {m: float(np.mean([s[m] for s in scores])) for m in self.methods}
    return self.ceilings[k]

  def bracket(self, max_k: int) -> tuple[int, int]:
    """(K with a negative gap, K with a non-negative gap), as close as BISECTIONS allow."""
    primary = self.methods[0]
    low, k = None, FIRST_K
    while k < max_k and self.gap(k)[primary] < 0:
      low, k = k, 2 * k
    high = min(k, max_k)
    if low is None:
      return high, high
    for _ in range(BISECTIONS):
      middle = int(round(np.sqrt(low * high)))
      if middle in (low, high):
        break
      if self.gap(middle)[primary] < 0:
        low = middle
      else:
        high = middle
    return low, high


def _interpolate(low: tuple[float, float], high: tuple[float, float]) -> float:
  """The ceiling where the predictive gap crosses zero, linear between (ceiling, gap) points."""
  (c0, g0), (c1, g1) = low, high
  if g1 <= g0:
    return c1 if g1 >= 0 else c0
  return c0 + (c1 - c0) * float(np.clip(-g0 / (g1 - g0), 0.0, 1.0))


def noise_ceilings(counts, metric: str = "correlation", methods=("spearman",), *,
                   n_splits: int = 4, seed: int = 0, draws: int = 2) -> dict[str, NoiseCeiling]:
  """{method: NoiseCeiling} of the human RDM of counts [n_images, classes] (see module).

  All methods share the priors, posterior draws and splits; K is chosen on the first method.
  Cost: about (n_splits + draws) x 8 RDM comparisons (measured in docs/rsa_statistics.md; an
  alignment run caches it per user, pipeline/cache.py).
  """
  counts = annotators.check_counts(counts, min_annotators=2)
  methods = list(methods)
  for method in methods:
    if method not in compare_lib.METHODS:
      raise InputError(f"Unknown comparison method {method!r}; choose one of "
                       f"{compare_lib.METHODS}.")
  if n_splits < 1 or draws < 1:
    raise InputError(f"n_splits={n_splits} and draws={draws} must be >= 1.")
  start = time.perf_counter()
  calibration = _Calibration(counts, metric, methods, n_splits, seed, draws)
  low, high = calibration.bracket(max_k=len(np.unique(counts, axis=0)))
  out = {}
  for method in methods:
    r_half = [s[method] for s in calibration.r_half]
    points = [(calibration.ceiling(k)[method], calibration.gap(k)[method]) for k in (low, high)]
    ceiling = _interpolate(*points)
    out[method] = NoiseCeiling(
        ceiling=ceiling, band=(min(points[0][0], ceiling - ACCURACY),
                               max(points[1][0], ceiling + ACCURACY)),
        r_half=float(np.mean(r_half)), r_half_std=float(np.std(r_half)),
        r_half_splits=tuple(r_half), spearman_brown=spearman_brown(float(np.mean(r_half))),
        latent_classes=(low, high),
        calibration=tuple((k, g[method]) for k, g in sorted(calibration.gaps.items())))
  logging.info("noise ceiling (%s, %s): %s; %d-%d latent classes, %d priors tried, %.0f s.",
               metric, ESTIMATOR, ", ".join(f"{m} {c.ceiling:.3f}" for m, c in out.items()),
               low, high, len(calibration.gaps), time.perf_counter() - start)
  return out


def noise_ceiling(counts, metric: str = "correlation", method: str = "spearman",
                  n_splits: int = 4, seed: int = 0) -> NoiseCeiling:
  """The NoiseCeiling of one method (see noise_ceilings)."""
  return noise_ceilings(counts, metric, [method], n_splits=n_splits, seed=seed)[method]
