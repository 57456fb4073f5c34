"""An independent reference: rsatoolbox's RDMs and RDM comparisons against align_jax's, on real
CIFAR-10H rows, for every metric and method both libraries have. Skipped where rsatoolbox is
not installed (the test extras install it)."""

import os

import numpy as np
import pytest

import align_jax.rsa as rsa

rsatoolbox = pytest.importorskip(
    "rsatoolbox", reason="rsatoolbox is not installed: pip install -e '.[test]' brings it")

N = 150  # images: 11,175 pairs (rsatoolbox's Kendall tau-a is quadratic in them)
METRICS = {"correlation": "correlation", "rsa_euclidean": "euclidean"}  # align_jax: rsatoolbox
METHODS = {"spearman": "spearman", "rho-a": "rho-a", "pearson": "corr", "cosine": "cosine",
           "kendall-tau-a": "tau-a", "kendall-tau-b": "tau-b"}


@pytest.fixture(scope="module")
def rows(offline_data_dir):
  """The first N CIFAR-10H rows, and a model's features that follow them through noise."""
  human = np.load(os.path.join(offline_data_dir, "cifar10h", "cifar10h-probs.npy"))[:N]
  rng = np.random.default_rng(0)
  features = np.concatenate([np.log(human + 0.05), rng.standard_normal((N, 22))], axis=1)
  return human, features + 0.5 * rng.standard_normal(features.shape)


def _toolbox_rdm(x: np.ndarray, method: str):
  return rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=method)


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_rdms_match_rsatoolbox(rows, metric):
  for x in rows:
    ours = np.asarray(rsa.rdm(x, metric), np.float64)
    theirs = _toolbox_rdm(x, METRICS[metric]).get_vectors()[0]
    np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=2e-7)


@pytest.mark.parametrize("metric", sorted(METRICS))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_rdm_comparisons_match_rsatoolbox(rows, metric, method):
  """On the same two vectors the scores agree to float64 rounding. From each library's own
  RDMs they differ by tie-breaking alone: CIFAR-10H holds many pairs at exactly equal
  distances, which float rounding splits differently (150 rows: 2,271 distinct correlation
  distances by scipy's pdist, 2,304 by rsatoolbox, 2,227 in align_jax's float32), moving rank
  scores by up to ~1.3e-4 here; a wrong formula would move them by far more."""
  human, features = rows
  ours_model, ours_human = rsa.rdm(features, metric), rsa.human_rdm(human, metric)
  same_vectors = rsatoolbox.rdm.compare(
      rsatoolbox.rdm.RDMs(np.asarray(ours_model, np.float64)[None]),
      rsatoolbox.rdm.RDMs(np.asarray(ours_human, np.float64)[None]), METHODS[method])[0, 0]
  assert rsa.compare(ours_model, ours_human, method) == pytest.approx(same_vectors, abs=1e-9)
  own_rdms = rsatoolbox.rdm.compare(_toolbox_rdm(features, METRICS[metric]),
                                    _toolbox_rdm(human, METRICS[metric]), METHODS[method])[0, 0]
  assert rsa.compare(ours_model, ours_human, method) == pytest.approx(own_rdms, abs=3e-4)
