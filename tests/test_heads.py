"""Head refitting and temperature scaling (pipeline/heads.py) against known truths and scipy."""

import numpy as np
import pytest
from scipy import optimize, special

from align_jax.errors import InputError
from align_jax.pipeline import heads


def _softmax(z):
  return special.softmax(z, axis=1)


def test_temperature_recovers_the_temperature_that_made_the_targets():
  rng = np.random.default_rng(0)
  logits = 3 * rng.standard_normal((500, 10))
  for true_t in (0.5, 1.0, 2.5):
    assert heads.fit_temperature(logits, _softmax(logits / true_t)) == pytest.approx(
        true_t, rel=1e-4)


def test_temperature_minimises_the_cross_entropy_like_a_grid_search():
  rng = np.random.default_rng(1)
  logits = 4 * rng.standard_normal((300, 10))
  targets = rng.dirichlet(np.ones(10) * 0.3, size=300)
  fitted = heads.fit_temperature(logits, targets)
  grid = np.exp(np.linspace(np.log(0.05), np.log(20), 20001))
  losses = [-np.mean(np.sum(targets * special.log_softmax(logits / t, axis=1), axis=1))
            for t in grid]
  assert fitted == pytest.approx(grid[int(np.argmin(losses))], rel=2e-3)


def test_head_refit_reaches_the_convex_optimum_of_the_cross_entropy():
  """The head's loss is convex: full-batch AdamW must end near scipy's L-BFGS optimum, and
  soft targets made by a known head are fitted down to their own entropy."""
  rng = np.random.default_rng(2)
  x = rng.standard_normal((400, 16)).astype(np.float32)
  true_w, true_b = rng.standard_normal((16, 10)), rng.standard_normal(10)
  targets = _softmax(x @ true_w + true_b)
  kernel, bias = heads.fit_head(x, targets, np.zeros((16, 10)), np.zeros(10), steps=3000,
                                learning_rate=0.05, weight_decay=0.0)
  loss = float(heads.cross_entropy(targets, x @ kernel + bias))

  def objective(flat):
    z = x @ flat[:160].reshape(16, 10) + flat[160:]
    return -np.mean(np.sum(targets * special.log_softmax(z, axis=1), axis=1))

  best = optimize.minimize(objective, np.zeros(170), method="L-BFGS-B").fun
  entropy = -np.mean(np.sum(targets * np.log(targets), axis=1))
  assert best == pytest.approx(entropy, abs=1e-3)
  assert loss == pytest.approx(best, abs=2e-3)


def test_head_refit_starts_from_the_given_head_and_is_deterministic():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((50, 8)).astype(np.float32)
  targets = rng.dirichlet(np.ones(10), size=50)
  kernel, bias = rng.standard_normal((8, 10)), rng.standard_normal(10)
  one = heads.fit_head(x, targets, kernel, bias, steps=1, learning_rate=1e-3, weight_decay=0.0)
  np.testing.assert_allclose(one[0], kernel, atol=1.1e-3)  # Adam's first step is <= lr
  assert not np.allclose(one[0], kernel)
  again = heads.fit_head(x, targets, kernel, bias, steps=1, learning_rate=1e-3, weight_decay=0.0)
  np.testing.assert_array_equal(one[0], again[0])


def test_find_head_names_the_one_dense_layer_from_features_to_classes():
  params = {"Conv_0": {"kernel": np.zeros((3, 3, 3, 8)), "bias": np.zeros(8)},
            "Dense_0": {"kernel": np.zeros((8, 10)), "bias": np.zeros(10)}}
  assert heads.find_head(params, 8, 10) == "Dense_0"
  params["Dense_1"] = {"kernel": np.zeros((8, 10)), "bias": np.zeros(10)}
  with pytest.raises(InputError, match="mode='full'"):
    heads.find_head(params, 8, 10)
