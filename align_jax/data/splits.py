"""Train / validation / test example dicts for training runs, from a config.

The validation split is a seeded hold-out of the CIFAR-10 training set and is what selects
checkpoints; the test split (the CIFAR-10H image set) is only reported.
"""

import numpy as np

from align_jax.data import cifar10, input_pipeline


def _subset(n: int, size: int, seed: int, purpose: int) -> np.ndarray:
  """Indices of a seeded random subset of size `size` (all when size is 0), sorted."""
  if not size or size >= n:
    return np.arange(n)
  return np.sort(np.random.default_rng([seed, purpose]).choice(n, size, replace=False))


def load_training_splits(config) -> dict[str, dict[str, np.ndarray]]:
  """{'train', 'validation', 'test'} -> {'image': uint8 [n, 32, 32, 3], 'label': int32 [n]}."""
  data = cifar10.load_cifar10(config.data_dir)
  train_idx, val_idx = input_pipeline.train_validation_split(
      len(data.train_labels), config.num_validation, config.seed)
  train_idx = train_idx[_subset(len(train_idx), config.train_subset, config.seed, 1)]
  test_idx = np.arange(config.test_subset or len(data.test_labels))

  def take(images, labels, idx):
    return {"image": images[idx], "label": labels[idx]}

  return {
      "train": take(data.train_images, data.train_labels, train_idx),
      "validation": take(data.train_images, data.train_labels, val_idx),
      "test": take(data.test_images, data.test_labels, test_idx),
  }
