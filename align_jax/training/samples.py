"""Image grids for TensorBoard and PNG files (VAE reconstructions and prior samples)."""

import os

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position


def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
  """[n, h, w, c] on [0, 1] -> one [rows * (h + 1) + 1, columns * (w + 1) + 1, c] image."""
  n, h, w, c = images.shape
  rows = -(-n // columns)
  grid = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1, c), np.float32)
  for i, image in enumerate(np.clip(images, 0, 1)):
    r, col = divmod(i, columns)
    grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + col * (w + 1):1 + col * (w + 1) + w] = image
  return grid


def save_png(grid: np.ndarray, directory: str, name: str) -> str:
  """Writes `grid` to directory/name.png (upscaled 4x, nearest) and returns the path."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, f"{name}.png")
  plt.imsave(path, np.repeat(np.repeat(grid, 4, axis=0), 4, axis=1))
  return path


def vae_grids(model, variables, images: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
  """Grids of images [n, 32, 32, 3] on [0, 1] beside their reconstructions, and of n prior
  samples decoded from a fixed key: {'reconstructions', 'prior_samples'}."""
  reconstruction, _ = model.apply(variables, images, train=False)
  z = jax.random.normal(jax.random.key(seed), (len(images), model.latent_dim))
  prior = model.apply(variables, z, method=model.decode)
  pairs = np.stack([images, np.asarray(reconstruction)], axis=1).reshape(-1, *images.shape[1:])
  return {"reconstructions": image_grid(pairs, 8),
          "prior_samples": image_grid(np.asarray(prior), 8)}
