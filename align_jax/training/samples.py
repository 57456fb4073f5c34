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


COLUMNS = 8
COLUMN_TITLES = {"reconstructions": ["original", "reconstruction"] * (COLUMNS // 2)}


def grid_figure(grid: np.ndarray, title: str, column_titles: list[str] | None = None):
  """A matplotlib figure of an image grid with a title and, optionally, one per column."""
  fig, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.6))
  ax.imshow(np.clip(grid, 0, 1), interpolation="nearest")
  ax.set_title(title, fontsize=9, pad=14 if column_titles else 6)
  for k, name in enumerate(column_titles or []):
    ax.text((k + 0.5) * grid.shape[1] / len(column_titles), -1, name, ha="center",
            va="bottom", fontsize=6)
  ax.axis("off")
  return fig


def save_png(grid: np.ndarray, directory: str, name: str, title: str) -> str:
  """Writes the grid figure to directory/name.png (columns titled for known grids)."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, f"{name}.png")
  fig = grid_figure(grid, title, COLUMN_TITLES.get(name.split("_0")[0]))
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def vae_grids(model, variables, images: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
  """Grids of images [n, 32, 32, 3] on [0, 1] beside their reconstructions (columns alternate
  original, reconstruction), and of n prior samples decoded from a fixed key:
  {'reconstructions', 'prior_samples'}."""
  reconstruction, _ = model.apply(variables, images, train=False)
  z = jax.random.normal(jax.random.key(seed), (len(images), model.latent_dim))
  prior = model.apply(variables, z, method=model.decode)
  pairs = np.stack([images, np.asarray(reconstruction)], axis=1).reshape(-1, *images.shape[1:])
  return {"reconstructions": image_grid(pairs, COLUMNS),
          "prior_samples": image_grid(np.asarray(prior), COLUMNS)}
