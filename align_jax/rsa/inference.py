"""Inference over images: bootstrap CIs, a paired bootstrap for model differences, permutations.

Bootstrap (as rsatoolbox): resample n images with replacement; a pair of an image with its
own copy is dropped, and a pair of distinct originals drawn m_i and m_j times counts
m_i * m_j times. Spearman and rho-a run on the joint engine (rsa/joint.py): the ranks of each
resample follow from one global sort per RDM, no re-sorting. `engine='expanded'` (and every
other method) re-ranks the expanded multiset of each resample instead: the reference the
engine is tested against, several times slower (docs/rsa_statistics.md, "Joint resampling").
`seconds_per_resample` in the result reports the cost.

CI sources: 'images' resamples images only (each image keeps its annotators' votes, so their
sampling noise travels with it). 'images+annotators' (a two-level bootstrap) also redraws each
drawn image's annotators from its own counts (one redraw per distinct image, shared by its
copies) and rebuilds the human RDM from them; annotator redraws use their own random stream, so
a seed gives the same image resamples under both sources. Redrawing adds sampling noise on top
of the data's own, which pulls resampled scores below the estimate, so its interval is the
percentile interval re-centred by that bias, `interval='centred'`: [q_lo, q_hi] + (estimate -
mean of the resampled scores). It is the interval whose coverage held in simulation, where
Efron's BC and the basic interval fell short (tests/test_reliability.py;
docs/rsa_statistics.md, "Uncertainty and p-values").

Permutation test: permute the image labels of one RDM, p = (1 + #{null >= observed}) /
(1 + permutations), one-sided for "more similar than chance".
"""

import dataclasses
import time

import numpy as np
import scipy.spatial.distance as ssd

from align_jax.errors import InputError
from align_jax.rsa import checks, joint, ranks
from align_jax.rsa import comparison as compare_lib
from align_jax.runtime import names
from align_jax.runtime.progress import Progress

CI_SOURCES = names.CI_SOURCES
INTERVALS = ("percentile", "centred")
ENGINES = ("joint", "expanded")


@dataclasses.dataclass(frozen=True)
class HumanAnnotators:
  """The annotator counts [n_images, classes] a human RDM was built from, and its metric:
  given to the bootstrap, it redraws annotators as well as images ('images+annotators')."""
  counts: np.ndarray
  metric: str


@dataclasses.dataclass(frozen=True)
class BootstrapResult:
  estimate: float  # on all images
  ci_low: float
  ci_high: float
  samples: np.ndarray  # [n_resamples]
  seconds_per_resample: float
  ci_source: str = "images"
  interval: str = "percentile"


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


def _check_counts(n_resamples: int, ci: float, interval: str = "percentile") -> None:
  if n_resamples < 1:
    raise InputError(f"n_resamples={n_resamples} must be >= 1.")
  if not 0 < ci < 1:
    raise InputError(f"ci={ci} must be in (0, 1), e.g. 0.95.")
  if interval not in INTERVALS:
    raise InputError(f"interval={interval!r} must be one of {INTERVALS}.")


def _check_annotators(human: HumanAnnotators | None, n: int) -> np.ndarray | None:
  """Validated counts of the human side's annotators (None: resample images only)."""
  return None if human is None else joint.check_annotators(human.counts, human.metric, n)


def interval_bounds(estimate: float, samples: np.ndarray, ci: float,
                    interval: str) -> tuple[float, float]:
  """Percentile interval of the samples, or ('centred') the same interval moved by the
  bootstrap's estimate of its own bias, estimate - mean(samples)."""
  low, high = np.quantile(samples, [(1 - ci) / 2, (1 + ci) / 2])
  shift = estimate - float(np.mean(samples)) if interval == "centred" else 0.0
  return float(low + shift), float(high + shift)


def _expanded_scores(vectors, n, method, n_resamples, seed, score_fn, counts=None,
                     metric=None, label=""):
  """score_fn(resampled vectors, method) for each resample, re-ranking the expanded multiset
  (every pair repeated m_i m_j times): [n_resamples, ...] and s/resample. Any method; the
  reference the joint engine is tested against.

  With annotator `counts`, the human RDM vectors["b"] is rebuilt in every resample from a
  redraw of the drawn images' annotators (condensed over the sorted distinct drawn images,
  pdist order, which is the order of `index`)."""
  rng = np.random.default_rng(seed)
  redraws = joint.annotator_rng(seed)
  samples = []
  start = time.perf_counter()
  methods = method if isinstance(method, list) else [method]
  progress = Progress(f"{label + ': ' if label else ''}bootstrap ({', '.join(methods)})",
                      n_resamples)
  for r in range(n_resamples):
    drawn, multiplicity = joint.draw_images(n, rng)
    i, j = np.triu_indices(len(drawn), 1)
    index = checks.condensed_index(drawn[i], drawn[j], n)
    weights = multiplicity[i] * multiplicity[j]
    resampled = {k: np.repeat(v[index], weights) for k, v in vectors.items()
                 if counts is None or k != "b"}
    if counts is not None:
      distinct, rows = joint.redrawn_human(counts[drawn], metric, redraws)
      table = ssd.squareform(distinct, checks=False)
      resampled["b"] = np.repeat(table[rows[i], rows[j]], weights)
    samples.append(score_fn(resampled, method))
    progress.update(r + 1)
  return np.asarray(samples, np.float64), (time.perf_counter() - start) / n_resamples


def default_interval(ci_source: str) -> str:
  """'percentile' when only images are resampled, 'centred' with annotator redraws."""
  return "percentile" if ci_source == "images" else "centred"


def _default_interval(human: HumanAnnotators | None, interval: str | None) -> str:
  return interval or default_interval(CI_SOURCES[human is not None])


def bootstrap(rdm_a, rdm_b, method: str = "spearman", *, n_resamples: int = 1000,
              seed: int = 0, ci: float = 0.95, human: HumanAnnotators | None = None,
              interval: str | None = None, label: str = "",
              engine: str = "joint") -> BootstrapResult:
  """CI of compare(rdm_a, rdm_b, method) over bootstrap resamples of images (and, with `human`,
  of rdm_b's annotators; see the module). `interval` defaults to 'percentile' for images only
  and 'centred' with annotators. `label` names the work in progress lines; `engine` as in
  bootstrap_methods."""
  return bootstrap_methods(rdm_a, rdm_b, [method], n_resamples=n_resamples, seed=seed, ci=ci,
                           human=human, interval=interval, label=label, engine=engine)[method]


def _check_engine(engine: str) -> None:
  if engine not in ENGINES:
    raise InputError(f"engine={engine!r} must be one of {ENGINES}.")


def _uses_joint(methods, engine: str) -> bool:
  _check_engine(engine)
  return engine == "joint" and all(m in compare_lib.RANK_METHODS for m in methods)


def bootstrap_methods(rdm_a, rdm_b, methods, *, n_resamples: int = 1000, seed: int = 0,
                      ci: float = 0.95, human: HumanAnnotators | None = None,
                      interval: str | None = None, label: str = "",
                      engine: str = "joint") -> dict[str, BootstrapResult]:
  """bootstrap() for several methods over the same resamples (identical to calling it per method
  with the same seed). The rank methods run on the joint engine (rsa/joint.py: no re-sorting
  per resample); `engine='expanded'`, and any other method, re-rank the expanded multiset."""
  interval = _default_interval(human, interval)
  _check_counts(n_resamples, ci, interval)
  methods = list(methods)
  vectors, n = _condensed({"a": rdm_a, "b": rdm_b})
  counts = _check_annotators(human, n)
  metric = human and human.metric
  if _uses_joint(methods, engine):
    result = joint.resample_jointly({"a": vectors["a"]}, vectors["b"], methods,
                                    n_bootstrap=n_resamples, n_permutations=0, seed=seed,
                                    human_counts=counts, metric=metric, label=label)
    estimates = [result.estimates["a"][m] for m in methods]
    samples, seconds = result.bootstrap["a"], result.seconds_per_resample
  else:
    score = lambda v, ms: list(compare_lib.compare_methods(v["a"], v["b"], ms).values())
    samples, seconds = _expanded_scores(vectors, n, methods, n_resamples, seed, score, counts,
                                        metric, label)
    estimates = score(vectors, methods)
  source = CI_SOURCES[counts is not None]
  out = {}
  for k, method in enumerate(methods):
    low, high = interval_bounds(estimates[k], samples[:, k], ci, interval)
    out[method] = BootstrapResult(estimates[k], low, high, samples[:, k], seconds, source,
                                  interval)
  return out


def paired_result(difference: float, samples: np.ndarray, ci: float,
                  interval: str) -> PairedResult:
  """CI and two-sided bootstrap p-value of a difference from its resampled values."""
  low, high = interval_bounds(difference, samples, ci, interval)
  tail = min(np.mean(samples <= 0), np.mean(samples >= 0))
  p_value = min(1.0, 2 * (tail * len(samples) + 1) / (len(samples) + 1))
  return PairedResult(difference, low, high, float(p_value), samples)


def paired_bootstrap(rdm_a1, rdm_a2, rdm_b, method: str = "spearman", *,
                     n_resamples: int = 1000, seed: int = 0, ci: float = 0.95,
                     human: HumanAnnotators | None = None,
                     interval: str | None = None, label: str = "",
                     engine: str = "joint") -> PairedResult:
  """CI and p-value of score(a1, b) - score(a2, b), resampling the same images (and, with
  `human`, the same redrawn annotators of rdm_b) for both; `engine` as in bootstrap_methods."""
  interval = _default_interval(human, interval)
  _check_counts(n_resamples, ci, interval)
  vectors, n = _condensed({"a1": rdm_a1, "a2": rdm_a2, "b": rdm_b})
  counts = _check_annotators(human, n)
  metric = human and human.metric
  if _uses_joint([method], engine):
    result = joint.resample_jointly({"a1": vectors["a1"], "a2": vectors["a2"]}, vectors["b"],
                                    [method], n_bootstrap=n_resamples, n_permutations=0,
                                    seed=seed, human_counts=counts, metric=metric, label=label)
    difference = result.estimates["a1"][method] - result.estimates["a2"][method]
    samples = result.bootstrap["a1"][:, 0] - result.bootstrap["a2"][:, 0]
  else:
    diff = lambda v, m: (compare_lib.compare(v["a1"], v["b"], m)
                         - compare_lib.compare(v["a2"], v["b"], m))
    samples, _ = _expanded_scores(vectors, n, method, n_resamples, seed, diff, counts, metric,
                                  label)
    difference = diff(vectors, method)
  return paired_result(difference, samples, ci, interval)


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


def permutation_p_value(observed: float, null: np.ndarray) -> float:
  """One-sided permutation p-value, (1 + #{null >= observed}) / (1 + permutations)."""
  return float((1 + np.sum(null >= observed)) / (1 + len(null)))


def permutation_test(rdm_a, rdm_b, method: str = "spearman", *, n_permutations: int = 1000,
                     seed: int = 0, label: str = "", engine: str = "joint") -> PermutationResult:
  """p-value of compare(rdm_a, rdm_b) against permutations of rdm_b's image labels.

  Ranks are permutation invariant, so for the rank methods each permutation costs one gather
  of a rank matrix and one dot product: on the joint engine (int32 ranks, shared by every
  target of a joint run) or, with engine='expanded', float64 squares. Other methods recompute
  compare().
  """
  if n_permutations < 1:
    raise InputError(f"n_permutations={n_permutations} must be >= 1.")
  vectors, n = _condensed({"a": rdm_a, "b": rdm_b})
  if _uses_joint([method], engine):
    result = joint.resample_jointly({"a": vectors["a"]}, vectors["b"], [method], n_bootstrap=0,
                                    n_permutations=n_permutations, seed=seed, label=label)
    observed, null = result.estimates["a"][method], result.null["a"][:, 0]
    return PermutationResult(observed, permutation_p_value(observed, null), null)
  observed = compare_lib.compare(vectors["a"], vectors["b"], method)
  rng = np.random.default_rng(seed)
  null = np.empty(n_permutations)
  progress = Progress(f"{label + ': ' if label else ''}permutations ({method})", n_permutations)
  if method in compare_lib.RANK_METHODS:
    (square_a, square_b), (ss_a, ss_b) = _rank_squares(vectors["a"], vectors["b"])
    num = len(vectors["a"])
    for p in range(n_permutations):
      perm = rng.permutation(n)
      cross = 0.5 * float(np.dot(square_a.ravel(), square_b[np.ix_(perm, perm)].ravel()))
      null[p] = compare_lib.finish(method, cross, ss_a, ss_b, num)
      progress.update(p + 1)
  else:
    i, j = np.triu_indices(n, 1)
    for p in range(n_permutations):
      perm = rng.permutation(n)
      pi, pj = perm[i], perm[j]
      index = checks.condensed_index(np.minimum(pi, pj), np.maximum(pi, pj), n)
      null[p] = compare_lib.compare(vectors["a"], vectors["b"][index], method)
      progress.update(p + 1)
  return PermutationResult(observed, permutation_p_value(observed, null), null)
