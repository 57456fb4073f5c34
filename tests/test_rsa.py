"""The RSA engine against scipy / numpy / brute-force references."""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.spatial.distance as ssd
import scipy.stats

from align_jax.errors import InputError
from align_jax.rsa import ranks
import align_jax.rsa as rsa
from align_jax.runtime import backend

RNG = np.random.default_rng(0)
FEATURES = RNG.standard_normal((120, 16)).astype(np.float32)
SCIPY_METRIC = {"euclidean": "euclidean", "sqeuclidean": "sqeuclidean",
                "correlation": "correlation", "cosine": "cosine"}


def _soft_labels(n, alpha=0.02, annotators=5, seed=1):
  """Human-like label distributions on a coarse grid: many duplicate rows and tied distances."""
  rng = np.random.default_rng(seed)
  counts = rng.multinomial(annotators, rng.dirichlet(np.full(10, alpha), n))
  return counts / annotators


@pytest.fixture(params=["host-sort", "host-counting", "xla"])
def path(request, monkeypatch):
  """Runs a test on each kernel: the numpy path ranking the model RDM by one packed sort or by
  a counting sort of its keys, and the jitted accelerator path (here on the CPU)."""
  monkeypatch.setattr(backend, "rsa_on_host", lambda: request.param != "xla")
  if request.param == "host-sort":
    monkeypatch.setattr(ranks, "MAX_KEY_RANGE", 0)
  elif request.param == "host-counting":
    monkeypatch.setattr(ranks, "BINS_PER_PAIR", 1e9)
  return request.param


@pytest.mark.parametrize("metric", list(SCIPY_METRIC))
def test_rdm_matches_pdist_in_order(metric, path):
  got = np.asarray(rsa.rdm(FEATURES, metric, block_size=7))
  expected = ssd.pdist(FEATURES.astype(np.float64), SCIPY_METRIC[metric])
  assert got.dtype == np.float32 and got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5 * expected.max())


def test_rsa_euclidean_is_rsatoolbox_convention(path):
  got = np.asarray(rsa.rdm(FEATURES, "rsa_euclidean"))
  expected = ssd.pdist(FEATURES.astype(np.float64), "sqeuclidean") / FEATURES.shape[1]
  np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("block_size", [1, 5, 64, 119, 1000])
def test_block_size_does_not_change_the_rdm(block_size, path):
  reference = np.asarray(rsa.rdm(FEATURES, "correlation", block_size=119))
  np.testing.assert_allclose(np.asarray(rsa.rdm(FEATURES, "correlation", block_size=block_size)),
                             reference, rtol=1e-6, atol=1e-6)


def test_duplicate_rows_are_exactly_zero_apart():
  probs = _soft_labels(300)
  assert len(np.unique(probs, axis=0)) <= 150  # takes the distinct-row table path
  got = np.asarray(rsa.human_rdm(probs, "euclidean"))
  expected = ssd.pdist(probs, "euclidean")
  np.testing.assert_array_equal(got == 0, expected == 0)
  np.testing.assert_allclose(got, expected, atol=1e-6)


def test_square_and_condensed_round_trip():
  condensed = np.asarray(rsa.rdm(FEATURES[:9], "euclidean"))
  square = rsa.square_from_rdm(condensed)
  np.testing.assert_allclose(square, ssd.squareform(condensed), rtol=1e-6)
  np.testing.assert_array_equal(rsa.rdm_from_square(square), condensed)
  with pytest.raises(InputError, match="symmetric"):
    rsa.rdm_from_square(square + np.triu(np.ones_like(square)))
  with pytest.raises(InputError, match="not n\\(n-1\\)/2"):
    rsa.square_from_rdm(np.ones(7))


def _rank_pairs():
  """(name, a, b): continuous, tie-heavy (human-like), and integer-valued RDM pairs."""
  a = np.asarray(rsa.rdm(FEATURES, "correlation"))
  tied = np.asarray(rsa.rdm(_soft_labels(120), "euclidean"))
  coarse = np.round(a * 4).astype(np.float32)  # few distinct values: big tie runs in both
  return [("continuous", a, np.asarray(rsa.rdm(FEATURES[:, ::-1] ** 2, "euclidean"))),
          ("human-ties", a, tied), ("both-tied", coarse, tied)]


@pytest.mark.parametrize("name,a,b", _rank_pairs())
def test_rank_methods_match_scipy(name, a, b, path):
  del name
  assert rsa.compare(a, b, "spearman") == pytest.approx(
      scipy.stats.spearmanr(a, b).statistic, abs=1e-12)
  ra, rb, n = scipy.stats.rankdata(a), scipy.stats.rankdata(b), len(a)
  rho_a = 12 * np.dot(ra - (n + 1) / 2, rb - (n + 1) / 2) / (n ** 3 - n)
  assert rsa.compare(a, b, "rho-a") == pytest.approx(rho_a, abs=1e-12)


@pytest.mark.parametrize("name,a,b", _rank_pairs())
def test_linear_and_kendall_methods_match_references(name, a, b):
  del name
  a64, b64 = a.astype(np.float64), b.astype(np.float64)
  assert rsa.compare(a, b, "pearson") == pytest.approx(np.corrcoef(a64, b64)[0, 1], abs=1e-12)
  cosine = a64 @ b64 / np.linalg.norm(a64) / np.linalg.norm(b64)
  assert rsa.compare(a, b, "cosine") == pytest.approx(cosine, abs=1e-12)
  assert rsa.compare(a, b, "kendall-tau-b") == pytest.approx(
      scipy.stats.kendalltau(a, b).statistic, abs=1e-12)


def test_kendall_tau_a_against_brute_force():
  a = np.round(RNG.random(60) * 5)
  b = np.round(a + RNG.random(60) * 3)
  score = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
              for i, j in itertools.combinations(range(60), 2))
  assert rsa.compare(a, b, "kendall-tau-a") == pytest.approx(score / (60 * 59 / 2), abs=1e-12)


def test_float64_inputs_are_ranked_exactly():
  a = np.array([1.0, 1.0 + 1e-12, 1.0 + 2e-12, 0.5, 3.0])  # equal once rounded to float32
  b = np.array([3.0, 2.0, 1.0, 4.0, 0.0])
  assert rsa.compare(a, b) == pytest.approx(scipy.stats.spearmanr(a, b).statistic, abs=1e-15)


def test_exact_with_millions_of_ties():
  """1.6M pairs; the human-like RDM has ~74k exact zeros and tie runs of 10^5: exact vs scipy."""
  n = 1_800
  features = np.random.default_rng(3).standard_normal((n, 32)).astype(np.float32)
  probs = _soft_labels(n, alpha=0.01, annotators=50, seed=4)
  a, b = np.asarray(rsa.rdm(features, "correlation")), np.asarray(rsa.rdm(probs, "euclidean"))
  assert np.mean(b == 0) > 0.03 and np.unique(b, return_counts=True)[1].max() > 50_000
  expected = scipy.stats.spearmanr(a, b).statistic
  assert abs(rsa.compare(a, b) - expected) < 1e-12
  assert abs(rsa.rsa_score(features, probs, "correlation", metric_b="euclidean")
             - expected) < 1e-12


@pytest.mark.slow
def test_exact_at_fifty_million_pairs():
  """At full scale, n = 10,000 images (49,995,000 pairs), error vs scipy below 1e-9."""
  n = 10_000
  features = np.random.default_rng(5).standard_normal((n, 64)).astype(np.float32)
  probs = _soft_labels(n, alpha=0.01, annotators=50, seed=6)
  a, b = np.asarray(rsa.rdm(features, "correlation")), np.asarray(rsa.rdm(probs, "euclidean"))
  expected = scipy.stats.spearmanr(a, b).statistic
  assert abs(rsa.compare(a, b) - expected) < 1e-9
  assert abs(rsa.rsa_score(features, probs, "correlation", metric_b="euclidean")
             - expected) < 1e-9


@pytest.mark.parametrize("method", ["spearman", "rho-a", "pearson"])
def test_rsa_score_equals_two_step_form(method, path):
  probs = _soft_labels(120)
  two_step = rsa.compare(rsa.rdm(FEATURES, "correlation"), rsa.rdm(probs, "euclidean"), method)
  fused = rsa.rsa_score(FEATURES, probs, "correlation", method, metric_b="euclidean")
  assert fused == pytest.approx(two_step, abs=1e-14)
  same = rsa.rsa_score(FEATURES, FEATURES[:, :8], "cosine", method)
  assert same == pytest.approx(rsa.compare(rsa.rdm(FEATURES, "cosine"),
                                           rsa.rdm(FEATURES[:, :8], "cosine"), method), abs=1e-14)


def test_bad_inputs_are_explained():
  a = np.asarray(rsa.rdm(FEATURES, "euclidean"))
  with pytest.raises(InputError, match="constant"):
    rsa.compare(a, np.ones_like(a))
  with pytest.raises(InputError, match="NaN"):
    rsa.compare(np.where(np.arange(a.size) == 3, np.nan, a), a)
  with pytest.raises(InputError, match="NaN"):
    rsa.rdm(np.where(np.arange(FEATURES.size).reshape(FEATURES.shape) == 5, np.inf, FEATURES))
  with pytest.raises(InputError, match="differ in length"):
    rsa.compare(a, a[:-1])
  with pytest.raises(InputError, match="constant: correlation distance is undefined"):
    rsa.rdm(np.vstack([FEATURES, np.ones((1, 16))]), "correlation")
  with pytest.raises(InputError, match="Unknown RDM metric"):
    rsa.rdm(FEATURES, "manhattan")
  with pytest.raises(InputError, match="Unknown comparison method"):
    rsa.compare(a, a, "tau")
  with pytest.raises(InputError, match="same images"):
    rsa.rsa_score(FEATURES, FEATURES[:-1])


def test_class_rdms():
  labels = np.repeat(np.arange(4), 30)
  got = np.asarray(rsa.class_rdm(FEATURES, labels, "euclidean"))
  means = np.stack([FEATURES[labels == c].mean(0) for c in range(4)]).astype(np.float64)
  np.testing.assert_allclose(got, ssd.pdist(means), rtol=1e-5)
  counts = np.array([[3, 1, 0], [2, 2, 0], [0, 0, 4], [1, 3, 0]])
  human = np.asarray(rsa.human_class_rdm(counts, np.array([0, 0, 2, 1]), "euclidean"))
  confusion = np.array([[5, 3, 0], [1, 3, 0], [0, 0, 4]], float)
  np.testing.assert_allclose(human, ssd.pdist(confusion / confusion.sum(1, keepdims=True)),
                             rtol=1e-6)


def test_linear_cka_matches_numpy_and_invariances():
  x = RNG.standard_normal((200, 12))
  y = x @ RNG.standard_normal((12, 5)) + 0.5 * RNG.standard_normal((200, 5))
  xc, yc = x - x.mean(0), y - y.mean(0)
  expected = (np.linalg.norm(yc.T @ xc) ** 2
              / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))
  assert rsa.linear_cka(x, y) == pytest.approx(expected, abs=1e-5)
  rotation = np.linalg.qr(RNG.standard_normal((12, 12)))[0]
  assert rsa.linear_cka(3 * x @ rotation + 1, y) == pytest.approx(expected, abs=1e-5)
  assert rsa.linear_cka(x, x) == pytest.approx(1.0, abs=1e-5)


def test_bootstrap_interval_covers_the_population_value():
  """Nominal 90% intervals over 30 independent small samples cover the large-sample value."""
  rng = np.random.default_rng(9)

  def sample(n):
    latent = rng.standard_normal((n, 3))
    return latent + 0.8 * rng.standard_normal((n, 3)), latent + 0.8 * rng.standard_normal((n, 3))

  population = rsa.rsa_score(*sample(1500), "euclidean")
  covered = 0
  for _ in range(30):
    x, y = sample(40)
    result = rsa.bootstrap(rsa.rdm(x, "euclidean"), rsa.rdm(y, "euclidean"), n_resamples=100,
                           seed=int(rng.integers(1 << 30)), ci=0.9)
    covered += result.ci_low <= population <= result.ci_high
  assert covered >= 24, covered


def test_bootstrap_methods_equals_one_bootstrap_per_method_with_the_same_seed():
  rng = np.random.default_rng(11)
  a = rsa.rdm(rng.standard_normal((40, 3)), "euclidean")
  b = np.round(rsa.rdm(rng.standard_normal((40, 3)), "euclidean"), 1)  # ties
  methods = ["spearman", "rho-a", "pearson"]
  together = rsa.bootstrap_methods(a, b, methods, n_resamples=20, seed=5)
  for method in methods:
    alone = rsa.bootstrap(a, b, method, n_resamples=20, seed=5)
    np.testing.assert_allclose(together[method].samples, alone.samples, rtol=1e-12)
    assert together[method].estimate == pytest.approx(rsa.compare(a, b, method), abs=1e-12)
    assert (together[method].ci_low, together[method].ci_high) == pytest.approx(
        (alone.ci_low, alone.ci_high), abs=1e-12)
  assert rsa.compare_methods(a, b, methods) == pytest.approx(
      {m: rsa.compare(a, b, m) for m in methods}, abs=1e-12)


def test_paired_bootstrap_and_permutation_test():
  rng = np.random.default_rng(10)
  latent = rng.standard_normal((60, 4))
  human = rsa.rdm(latent + 0.3 * rng.standard_normal((60, 4)), "euclidean")
  good = rsa.rdm(latent + 0.3 * rng.standard_normal((60, 4)), "euclidean")
  poor = rsa.rdm(latent + 3.0 * rng.standard_normal((60, 4)), "euclidean")
  paired = rsa.paired_bootstrap(good, poor, human, n_resamples=200, seed=1)
  assert paired.difference > 0 and paired.ci_low > 0 and paired.p_value < 0.05
  related = rsa.permutation_test(good, human, n_permutations=200, seed=2)
  assert related.p_value == pytest.approx(1 / 201)
  unrelated = rsa.permutation_test(rsa.rdm(rng.standard_normal((60, 4)), "euclidean"), human,
                                   n_permutations=200, seed=3)
  assert unrelated.p_value > 0.01
  with pytest.raises(InputError, match="n_resamples"):
    rsa.bootstrap(good, human, n_resamples=0)


def test_permutation_null_of_rank_methods_matches_recomputing_each_permutation():
  a = np.asarray(rsa.rdm(FEATURES[:30], "euclidean"))
  b = np.asarray(rsa.rdm(_soft_labels(30), "euclidean"))
  result = rsa.permutation_test(a, b, "spearman", n_permutations=5, seed=4)
  rng = np.random.default_rng(4)
  for value in result.null:
    perm = rng.permutation(30)
    permuted = ssd.squareform(ssd.squareform(b)[perm][:, perm], checks=False)
    assert value == pytest.approx(scipy.stats.spearmanr(a, permuted).statistic, abs=1e-12)


def test_rsa_does_not_import_tensorflow():
  code = "import sys, align_jax.rsa; print('tensorflow' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert out.stdout.strip() == "False"
