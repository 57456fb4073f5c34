"""Behavioural measures on hand-computed cases."""

import numpy as np
import pytest

from align_jax.analysis import behaviour
from align_jax.errors import InputError


def test_human_majority_breaks_ties_toward_the_label_then_the_lowest_id():
  counts = np.array([[5, 5, 0], [0, 4, 4], [1, 7, 2], [3, 0, 3]])
  labels = np.array([1, 0, 2, 1])
  assert behaviour.human_majority(counts, labels).tolist() == [1, 1, 1, 0]


def test_cross_entropy_floor_and_kl():
  human = np.array([[0.5, 0.5], [1.0, 0.0]])
  ce, floor, kl = behaviour.human_cross_entropy(human, human)
  assert floor == pytest.approx(np.log(2) / 2) and ce == pytest.approx(floor) and kl == 0
  model = np.array([[0.9, 0.1], [0.9, 0.1]])
  ce, _, kl = behaviour.human_cross_entropy(model, human)
  expected = (-(0.5 * np.log(0.9) + 0.5 * np.log(0.1)) - np.log(0.9)) / 2
  assert ce == pytest.approx(expected) and kl == pytest.approx(expected - np.log(2) / 2)


def test_expected_calibration_error_by_hand():
  probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.6, 0.4], [0.3, 0.7]])
  labels = np.array([0, 1, 0, 1])
  # bins: 0.95 -> bin 14 (acc 0.5, conf 0.95); 0.6 -> bin 9 (1, 0.6); 0.7 -> bin 10 (1, 0.7)
  expected = 0.5 * 0.45 + 0.25 * 0.4 + 0.25 * 0.3
  assert behaviour.expected_calibration_error(probs, labels) == pytest.approx(expected)


def test_error_consistency_by_hand():
  correct = np.array([1, 1, 0, 0])
  share = np.array([1.0, 0.5, 0.0, 0.5])
  result = behaviour.error_consistency(correct, share, n_resamples=200, seed=0)
  c_obs = np.mean([1.0, 0.5, 1.0, 0.5])
  c_exp = 0.5 * 0.5 + 0.5 * 0.5
  assert result.observed == pytest.approx(c_obs) and result.expected == pytest.approx(c_exp)
  assert result.kappa == pytest.approx((c_obs - c_exp) / (1 - c_exp))
  assert result.ci_low <= result.kappa <= result.ci_high


def test_confusions_and_most_confused_pairs():
  labels = np.array([0, 0, 1, 1, 2, 2])
  predictions = np.array([0, 1, 0, 1, 2, 2])
  confusion = behaviour.model_confusion(predictions, labels, 3)
  assert confusion.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
  assert behaviour.most_confused_pairs(confusion, top=1) == [(0, 1, 1.0)]
  counts = np.array([[2, 1, 0], [0, 3, 0], [0, 0, 3]])
  assert behaviour.human_confusion(counts, np.array([0, 0, 2])).tolist() == [
      [2, 4, 0], [0, 0, 0], [0, 0, 3]]


def test_behavioural_alignment_collects_everything_and_checks_shapes():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, 200)
  counts = rng.multinomial(50, np.full(10, 0.02) + 0.8 * np.eye(10)[labels])
  logits = rng.standard_normal((200, 10)) + 3 * np.eye(10)[labels]
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  result = behaviour.behavioural_alignment(probs, counts, labels, n_resamples=50)
  assert 0.5 < result["accuracy"] <= 1 and result["human_kl"] > 0
  assert np.allclose(np.sum(result["error_matrix"], axis=1), 0)
  with pytest.raises(InputError, match="probability rows"):
    behaviour.behavioural_alignment(logits, counts, labels)
