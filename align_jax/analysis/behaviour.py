"""Behavioural alignment of a classifier with CIFAR-10H: accuracies, cross-entropy against human
label distributions, calibration, confusions and error consistency. Arrays in, numbers out.

Conventions: probs [n, k] model softmax outputs; human_counts [n, k] annotator choices;
labels [n] CIFAR-10 labels. Confusion matrices have true classes as rows.
"""

import dataclasses

import numpy as np

from align_jax.errors import InputError
from align_jax.rsa.human import human_confusion  # annotator choices: rows = CIFAR-10 labels

ECE_BINS = 15


def _check(probs: np.ndarray, human_counts: np.ndarray, labels: np.ndarray) -> None:
  if probs.ndim != 2 or probs.shape != human_counts.shape or labels.shape != probs.shape[:1]:
    raise InputError(f"Expected probs and human counts [n, classes] and labels [n]; got "
                     f"{probs.shape}, {human_counts.shape} and {labels.shape}.")
  if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4) or np.any(probs < 0):
    raise InputError("probs must be probability rows (softmax outputs), summing to 1.")


def human_majority(human_counts: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """The class most annotators chose. Ties go to the CIFAR-10 label when it is among the tied
  classes, else to the lowest class id (3 CIFAR-10H images have a tied majority)."""
  top = human_counts == human_counts.max(axis=1, keepdims=True)
  label_is_top = top[np.arange(len(labels)), labels]
  return np.where(label_is_top, labels, np.argmax(top, axis=1))


def entropy(p: np.ndarray) -> np.ndarray:
  """Shannon entropy in nats of each row: [n, k] -> [n] (0 log 0 = 0)."""
  with np.errstate(divide="ignore", invalid="ignore"):
    return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=1)


def human_cross_entropy(probs: np.ndarray, human_probs: np.ndarray) -> tuple[float, float, float]:
  """(CE of the model against human label distributions, its floor = mean human entropy, KL).

  KL = CE - floor is 0 exactly when the model reproduces every human distribution. Model
  probabilities are clipped at 1e-12 before the log, so a class humans chose but the model
  gives (numerically) zero adds at most -log(1e-12) = 27.6 nats per image: CE stays finite.
  """
  ce = float(np.mean(-np.sum(human_probs * np.log(np.clip(probs, 1e-12, 1.0)), axis=1)))
  floor = float(np.mean(entropy(human_probs)))
  return ce, floor, ce - floor


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
  """ECE with `bins` equal-width confidence bins: sum_b |acc_b - conf_b| * n_b / n."""
  confidence = probs.max(axis=1)
  correct = probs.argmax(axis=1) == labels
  which = np.minimum((confidence * bins).astype(int), bins - 1)
  ece = 0.0
  for b in range(bins):
    inside = which == b
    if inside.any():
      ece += abs(correct[inside].mean() - confidence[inside].mean()) * inside.mean()
  return float(ece)


def model_confusion(predictions: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
  """Counts [classes, classes]: row = true label, column = predicted class."""
  confusion = np.zeros((classes, classes), np.int64)
  np.add.at(confusion, (labels, predictions), 1)
  return confusion


def row_normalise(confusion: np.ndarray) -> np.ndarray:
  return confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)


def most_confused_pairs(confusion: np.ndarray, top: int = 5) -> list[tuple[int, int, float]]:
  """Unordered class pairs by the share of row-normalised confusion in both directions."""
  rates = row_normalise(confusion)
  pairs = [(i, j, float(rates[i, j] + rates[j, i]))
           for i in range(len(rates)) for j in range(i + 1, len(rates))]
  return sorted(pairs, key=lambda p: -p[2])[:top]


@dataclasses.dataclass(frozen=True)
class ErrorConsistency:
  kappa: float
  observed: float  # c_obs
  expected: float  # c_exp
  ci_low: float
  ci_high: float


def _kappa(correct: np.ndarray, human_share: np.ndarray) -> tuple[float, float, float]:
  observed = np.mean(correct * human_share + (1 - correct) * (1 - human_share))
  p_m, p_h = correct.mean(), human_share.mean()
  expected = p_m * p_h + (1 - p_m) * (1 - p_h)
  kappa = (observed - expected) / (1 - expected) if expected < 1 else np.nan  # all one outcome
  return float(kappa), float(observed), float(expected)


def error_consistency(correct: np.ndarray, human_share: np.ndarray, *, n_resamples: int = 1000,
                      seed: int = 0, ci: float = 0.95) -> ErrorConsistency:
  """Error consistency (Geirhos et al. 2020) adapted to CIFAR-10H, where no annotator saw all
  images: m_i = 1 if the model is right on image i, h_i = human share choosing the label;
  c_obs = mean[m h + (1 - m)(1 - h)], c_exp = p_m p_h + (1 - p_m)(1 - p_h),
  kappa = (c_obs - c_exp) / (1 - c_exp); percentile bootstrap CI over images."""
  correct = np.asarray(correct, np.float64)
  human_share = np.asarray(human_share, np.float64)
  kappa, observed, expected = _kappa(correct, human_share)
  rng = np.random.default_rng(seed)
  samples = []
  for _ in range(n_resamples):
    idx = rng.integers(0, len(correct), len(correct))
    samples.append(_kappa(correct[idx], human_share[idx])[0])
  samples = np.asarray(samples)[np.isfinite(samples)]  # resamples of a single outcome have none
  low, high = (np.quantile(samples, [(1 - ci) / 2, (1 + ci) / 2]) if samples.size
               else (np.nan, np.nan))
  return ErrorConsistency(kappa, observed, expected, float(low), float(high))


def behavioural_alignment(probs: np.ndarray, human_counts: np.ndarray, labels: np.ndarray, *,
                          n_resamples: int = 1000, seed: int = 0) -> dict:
  """Every behavioural number of one classifier, as a JSON-ready dict."""
  probs, human_counts = np.asarray(probs, np.float64), np.asarray(human_counts)
  labels = np.asarray(labels)
  _check(probs, human_counts, labels)
  human_probs = human_counts / human_counts.sum(axis=1, keepdims=True)
  predictions = probs.argmax(axis=1)
  ce, floor, kl = human_cross_entropy(probs, human_probs)
  consistency = error_consistency(predictions == labels,
                                  human_probs[np.arange(len(labels)), labels],
                                  n_resamples=n_resamples, seed=seed)
  confusion = model_confusion(predictions, labels, probs.shape[1])
  humans = human_confusion(human_counts, labels).astype(np.int64)
  return {
      "accuracy": float(np.mean(predictions == labels)),
      "accuracy_vs_human_majority": float(np.mean(
          predictions == human_majority(human_counts, labels))),
      "human_cross_entropy": ce, "human_entropy_floor": floor, "human_kl": kl,
      "ece": expected_calibration_error(probs, labels),
      "error_consistency": dataclasses.asdict(consistency),
      "confusion": confusion.tolist(), "human_confusion": humans.tolist(),
      "error_matrix": (row_normalise(confusion) - row_normalise(humans)).tolist(),
      "most_confused": most_confused_pairs(confusion),
      "human_most_confused": most_confused_pairs(humans),
  }
