"""Human RDMs from CIFAR-10H: per image (label distributions) and per class (confusions)."""

import numpy as np

from align_jax.errors import InputError
from align_jax.rsa import dissimilarity as rdm_lib


def human_rdm(probs, metric: str = "correlation", *, block_size: int | None = None):
  """Condensed RDM between the human label distributions of images: probs [n, classes].

  CIFAR-10H has few distinct rows (2,923 of 10,000), so this is computed on distinct rows and
  gathered: identical rows are exactly 0 apart.
  """
  return rdm_lib.rdm(probs, metric, block_size=block_size)


def human_confusion(counts, labels) -> np.ndarray:
  """[classes, classes]: row t = how often annotators chose each class for true class t."""
  counts = np.asarray(counts)
  labels = np.asarray(labels).reshape(-1)
  if counts.ndim != 2 or counts.shape[0] != labels.shape[0]:
    raise InputError(f"counts must be [n_images, classes] matching labels [n_images]; got "
                     f"{counts.shape} and {labels.shape}.")
  if labels.min() < 0 or labels.max() >= counts.shape[1]:
    raise InputError(f"labels must be class ids in 0..{counts.shape[1] - 1}.")
  confusion = np.zeros((counts.shape[1],) * 2, np.float64)
  np.add.at(confusion, labels, counts)
  return confusion


def human_class_rdm(counts, labels, metric: str = "correlation"):
  """Class-level human RDM: distances between rows of the row-normalised human confusion matrix.

  counts [n, classes] annotator choices per image; labels [n] CIFAR-10 labels.
  """
  confusion = human_confusion(counts, labels)
  present = confusion.sum(axis=1) > 0
  if present.sum() < 3:
    raise InputError("human_class_rdm needs images of at least 3 classes.")
  rows = confusion[present] / confusion[present].sum(axis=1, keepdims=True)
  return rdm_lib.rdm(rows, metric)
