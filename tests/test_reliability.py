"""Annotator-level statistics: splits, redraws, the latent-class prior, and the noise ceiling
validated against simulations whose true label distributions are known."""

import os

import numpy as np
import pytest
import scipy.spatial.distance as ssd
import scipy.stats

from align_jax.analysis import alignment
from align_jax.errors import InputError
from align_jax.rsa import annotators, simulation
import align_jax.rsa as rsa
from tests.conftest import SHARED_DATA

CIFAR10H_COUNTS = os.path.join(SHARED_DATA, "cifar10h", "cifar10h-counts.npy")


def _real_counts() -> np.ndarray:
  if not os.path.isfile(CIFAR10H_COUNTS):
    pytest.skip(f"CIFAR-10H counts not available at {CIFAR10H_COUNTS}")
  return np.load(CIFAR10H_COUNTS)


def test_halves_keep_every_annotator_once():
  counts = np.random.default_rng(8).integers(0, 8, (500, 10))
  counts[:, 0] += 1
  first, second = annotators.split_halves(counts, np.random.default_rng(0))
  np.testing.assert_array_equal(first + second, counts)
  assert np.all(first >= 0) and np.all(second >= 0)
  np.testing.assert_array_equal(first.sum(1), counts.sum(1) // 2)


def test_redraw_keeps_totals_and_has_multinomial_moments():
  counts = np.tile([[30, 15, 5, 0]], (20_000, 1))
  redrawn = annotators.redraw(counts, np.random.default_rng(1))
  np.testing.assert_array_equal(redrawn.sum(1), 50)
  assert np.all(redrawn[:, 3] == 0)  # a class nobody chose is never redrawn
  p = np.array([0.6, 0.3, 0.1])
  np.testing.assert_allclose(redrawn[:, :3].mean(0), 50 * p, rtol=0.01)
  np.testing.assert_allclose(redrawn[:, :3].var(0), 50 * p * (1 - p), rtol=0.05)


def test_latent_classes_recover_a_known_mixture():
  """Two well-separated atoms: EM finds them and their weights; posteriors pick the right one."""
  rng = np.random.default_rng(2)
  atoms = np.array([[0.8, 0.1, 0.1], [0.1, 0.2, 0.7]])
  which = rng.random(3000) < 0.3
  counts = annotators.multinomial_rows(np.full(3000, 40), atoms[which.astype(int)], rng)
  prior = annotators.fit_latent_classes(counts, 2, seed=0)
  order = np.argsort(prior.atoms[:, 0])[::-1]
  np.testing.assert_allclose(prior.atoms[order], atoms, atol=0.02)
  np.testing.assert_allclose(prior.weights[order], [0.7, 0.3], atol=0.03)
  draws = prior.posterior_draw(counts, np.random.default_rng(3))
  assert np.mean(np.all(draws == prior.atoms[order][which.astype(int)], axis=1)) > 0.99


def test_bad_counts_are_explained():
  with pytest.raises(InputError, match="non-negative integers"):
    rsa.noise_ceiling(np.full((5, 3), 1.5))
  with pytest.raises(InputError, match="fewer than 2 annotators"):
    rsa.noise_ceiling(np.array([[2, 1], [1, 0], [3, 3]]))
  with pytest.raises(InputError, match="Unknown comparison method"):
    rsa.noise_ceiling(np.full((5, 3), 4), method="tau")


def _simulated(regime: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(true label distributions, simulated counts) for n CIFAR-10H images (rsa/simulation.py)."""
  return simulation.simulate(_real_counts(), regime, n, seed)


def _perfect_score(truth, counts, metric, method):
  """scipy's score of the true distributions against the observed human RDM (float64 pdist)."""
  a = ssd.pdist(truth, metric)
  b = ssd.pdist(counts / counts.sum(1, keepdims=True), metric)
  if method == "spearman":
    return scipy.stats.spearmanr(a, b).statistic
  ra, rb = scipy.stats.rankdata(a), scipy.stats.rankdata(b)
  return 12 * np.dot(ra - ra.mean(), rb - rb.mean()) / (len(a) ** 3 - len(a))


def _ceiling_errors(regime, metric, n, datasets):
  """Mean over datasets of (new ceiling - perfect score, Spearman-Brown - perfect) per method."""
  errors = {m: ([], []) for m in ("spearman", "rho-a")}
  for seed in range(datasets):
    truth, counts = _simulated(regime, n, seed)
    ceilings = rsa.noise_ceilings(counts, metric, ["spearman", "rho-a"], seed=seed)
    for method, (new, old) in errors.items():
      perfect = _perfect_score(truth, counts, metric, method)
      new.append(ceilings[method].ceiling - perfect)
      old.append(ceilings[method].spearman_brown - perfect)
  return {m: (float(np.mean(new)), float(np.mean(old))) for m, (new, old) in errors.items()}


# (regime, metric, whether Spearman-Brown is more than 0.02 too high there: its bias grows with
# the smoothing of the true distributions; on the Dirichlet set it is about +0.02).
FAST_CASES = [("smooth0.25", "correlation", True),
              pytest.param("smooth1", "euclidean", True, marks=pytest.mark.slow),
              pytest.param("dirichlet", "correlation", False, marks=pytest.mark.slow)]


@pytest.mark.parametrize("regime,metric,spearman_brown_fails", FAST_CASES)
def test_ceiling_matches_the_perfect_model_where_spearman_brown_does_not(regime, metric,
                                                                        spearman_brown_fails):
  for method, (new, old) in _ceiling_errors(regime, metric, n=1000, datasets=2).items():
    assert abs(new) <= 0.02, (method, new)
    if spearman_brown_fails:
      assert old > 0.02, (method, old)


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["correlation", "euclidean"])
@pytest.mark.parametrize("regime", ["smooth0", "smooth0.25", "smooth1", "dirichlet"])
def test_ceiling_in_every_regime(regime, metric):
  """The validation matrix: every regime x metric x method within 0.02 of the perfect model's
  score, averaged over 3 simulated datasets of 1,500 images."""
  for method, (new, _) in _ceiling_errors(regime, metric, n=1500, datasets=3).items():
    assert abs(new) <= 0.02, (method, new)


def test_annotator_redraws_leave_the_image_resamples_unchanged():
  """With unanimous images a redraw reproduces the counts, so the two-level bootstrap must give
  exactly the image-only samples for the same seed (annotators use their own stream)."""
  rng = np.random.default_rng(4)
  counts = np.zeros((50, 4), np.int64)
  counts[np.arange(50), rng.integers(0, 4, 50)] = rng.integers(3, 9, 50)
  human = rsa.rdm(annotators.distributions(counts), "euclidean")
  model = rsa.rdm(rng.standard_normal((50, 3)), "euclidean")
  images = rsa.bootstrap(model, human, n_resamples=30, seed=3, interval="percentile")
  both = rsa.bootstrap(model, human, n_resamples=30, seed=3, interval="percentile",
                       human=rsa.HumanAnnotators(counts, "euclidean"))
  np.testing.assert_array_equal(images.samples, both.samples)
  assert (images.ci_source, both.ci_source) == ("images", "images+annotators")


def test_annotator_redraws_lower_the_resampled_scores_and_the_interval_is_recentred():
  """Redrawing annotators adds noise on top of the data's own: resampled scores of a model that
  follows the human distributions fall below the estimate, and the 'centred' interval moves
  the percentile interval of the same samples up by exactly that bias."""
  truth, counts = _simulated("smooth0.25", 300, seed=5)
  model = rsa.rdm(np.log(truth + 0.05) + 0.3 * np.random.default_rng(6).standard_normal(
      truth.shape), "correlation")
  human_rdm = rsa.rdm(annotators.distributions(counts), "correlation")
  human = rsa.HumanAnnotators(counts, "correlation")
  both = rsa.bootstrap(model, human_rdm, n_resamples=60, seed=1, human=human)
  images = rsa.bootstrap(model, human_rdm, n_resamples=60, seed=1)
  assert both.interval == "centred" and images.interval == "percentile"
  bias = both.estimate - np.mean(both.samples)
  assert bias > 0.005 and np.mean(images.samples) > np.mean(both.samples) + 0.005
  np.testing.assert_allclose([both.ci_low, both.ci_high],
                             np.quantile(both.samples, [0.025, 0.975]) + bias, rtol=1e-12)


def _population_sampler():
  """(sample(size, rng) -> (model RDM, annotator counts), the population value of the score,
  the generator that drew it, to go on drawing datasets):
  images drawn from a population of CIFAR-10H-like truths (smoothed with 0.25), ~50 simulated
  annotators each, and a model that follows the truths through noise."""
  real = _real_counts()
  truths = (real + 0.25) / (real.sum(1, keepdims=True) + 2.5)
  totals = real.sum(1)

  def sample(size, rng):
    idx = rng.integers(0, len(real), size)
    counts = annotators.multinomial_rows(totals[idx], truths[idx], rng)
    model = np.log(truths[idx] + 0.05) + 0.7 * rng.standard_normal(truths[idx].shape)
    return rsa.rdm(model, "correlation"), counts

  rng = np.random.default_rng(11)
  population = np.mean([rsa.compare(m, rsa.rdm(annotators.distributions(c), "correlation"))
                        for m, c in (sample(3000, rng) for _ in range(2))])
  return sample, population, rng


def _coverage(n: int, datasets: int, resamples: int) -> dict[str, float]:
  """{CI source: share of simulated datasets whose 95% CI holds the population value of the
  score} (see _population_sampler). Both sources see the same datasets and image resamples."""
  sample, population, rng = _population_sampler()
  covered = dict.fromkeys(rsa.CI_SOURCES, 0)
  for d in range(datasets):
    model_rdm, counts = sample(n, rng)
    human_rdm = rsa.rdm(annotators.distributions(counts), "correlation")
    for source in rsa.CI_SOURCES:
      human = rsa.HumanAnnotators(counts, "correlation") if source != "images" else None
      result = rsa.bootstrap(model_rdm, human_rdm, n_resamples=resamples, seed=d, human=human)
      covered[source] += result.ci_low <= population <= result.ci_high
  return {source: c / datasets for source, c in covered.items()}


def test_fold_mean_intervals_cover_the_population_value():
  """The within-fold RSA of fine-tuned networks: a score averaged over k folds of held-out
  images, with the CI of alignment.fold_mean_statistics (each fold bootstrapped on its own
  images, fold means combined per resample). Known truth: the population value of the score;
  40 datasets of 3 folds x 60 images, both CI sources."""
  sample, population, rng = _population_sampler()
  covered, widths = dict.fromkeys(rsa.CI_SOURCES, 0), {}
  for d in range(40):
    folds = [sample(60, rng) for _ in range(3)]
    humans = [rsa.rdm(annotators.distributions(c), "correlation") for _, c in folds]
    for source in rsa.CI_SOURCES:
      results = [rsa.bootstrap(m, h, n_resamples=80, seed=10 * d + k, human=(
          rsa.HumanAnnotators(c, "correlation") if source != "images" else None))
          for k, ((m, c), h) in enumerate(zip(folds, humans))]
      entry = alignment.fold_mean_statistics([r.estimate for r in results],
                                             [r.samples for r in results], 0.8,
                                             rsa.default_interval(source))
      covered[source] += entry["ci_low"] <= population <= entry["ci_high"]
      widths.setdefault(source, []).append(
          (entry["ci_high"] - entry["ci_low"], np.mean([r.ci_high - r.ci_low for r in results])))
  for source, c in covered.items():
    assert 0.85 <= c / 40 <= 1.0, (source, c / 40)
    # the mean of 3 independent folds: its CI is about 1/sqrt(3) as wide as one fold's
    ratio = np.mean([w for w, _ in widths[source]]) / np.mean([w for _, w in widths[source]])
    assert 0.45 <= ratio <= 0.7, (source, ratio)


def test_bootstrap_intervals_cover_the_population_value():
  """Fast version of the coverage simulation: 40 datasets of 60 images, both CI sources."""
  for source, share in _coverage(n=60, datasets=40, resamples=80).items():
    assert 0.85 <= share <= 1.0, (source, share)


@pytest.mark.slow
def test_bootstrap_intervals_cover_the_population_value_in_90_to_99_percent():
  """95% intervals hold the truth in 90-99% of 200 datasets of 150 images."""
  shares = _coverage(n=150, datasets=200, resamples=200)
  print("coverage of 95% intervals over 200 datasets:", shares)
  for source, share in shares.items():
    assert 0.90 <= share <= 0.99, (source, share)
