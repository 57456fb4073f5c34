"""Figures of the alignment report. Matplotlib only: arrays in, PNG files out, nothing computed
beyond display transforms (rank-percentiles for heatmaps, classical MDS coordinates)."""

import os

import matplotlib
import numpy as np
import scipy.stats

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path + ".tmp.png", dpi=110, bbox_inches="tight")
  plt.close(fig)
  os.replace(path + ".tmp.png", path)
  return path


def _percentiles(square: np.ndarray) -> np.ndarray:
  """Off-diagonal entries as rank percentiles (the field's display convention: comparable
  colour scales for RDMs of any metric); diagonal 0."""
  i, j = np.triu_indices(len(square), 1)
  ranked = scipy.stats.rankdata(square[i, j]) / len(i)
  out = np.zeros_like(square, dtype=np.float64)
  out[i, j] = out[j, i] = ranked
  return out


def rdm_heatmaps(path: str, panels: dict[str, np.ndarray], labels: np.ndarray) -> str:
  """Square RDMs [m, m] of the same images (already sorted by class), side by side, with the
  class boundaries marked."""
  fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.2), squeeze=False)
  edges = np.flatnonzero(np.diff(labels)) + 0.5
  for ax, (title, square) in zip(axes[0], panels.items()):
    image = ax.imshow(_percentiles(square), cmap="viridis", vmin=0, vmax=1,
                      interpolation="nearest")
    for e in edges:
      ax.axhline(e, color="white", linewidth=0.4)
      ax.axvline(e, color="white", linewidth=0.4)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="dissimilarity (rank percentile)")
  return _save(fig, path)


def alignment_bars(path: str, names: list[str], estimates: list[float],
                   ci_low: list[float | None], ci_high: list[float | None],
                   ceiling: tuple[float, float], ylabel: str) -> str:
  """Bars with 95% CIs, and the noise-ceiling band (low, high) in grey."""
  fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(names) + 2), 4))
  x = np.arange(len(names))
  est = np.asarray(estimates)
  low = np.asarray([e if l is None else l for e, l in zip(est, ci_low)])
  high = np.asarray([e if h is None else h for e, h in zip(est, ci_high)])
  ax.bar(x, est, color="tab:blue", alpha=0.8)
  # A percentile CI need not contain the estimate; draw its ends, never negative bars.
  ax.errorbar(x, est, yerr=[np.maximum(est - low, 0), np.maximum(high - est, 0)], fmt="none",
              ecolor="black", capsize=3)
  ax.axhspan(*ceiling, color="grey", alpha=0.3, label="human noise ceiling")
  ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
  ax.set_ylabel(ylabel)
  ax.axhline(0, color="black", linewidth=0.5)
  ax.legend(loc="upper right", fontsize=8)
  return _save(fig, path)


def _matrix(ax, matrix: np.ndarray, title: str, cmap: str, vmin: float, vmax: float):
  image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax)
  ax.set_title(title, fontsize=9)
  names = CLASS_NAMES[:len(matrix)]
  ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
  ax.set_yticks(range(len(names)), names, fontsize=7)
  ax.set_xlabel("chosen class", fontsize=8)
  ax.set_ylabel("CIFAR-10 label", fontsize=8)
  return image


def confusions(path: str, model_rates: np.ndarray, human_rates: np.ndarray, label: str) -> str:
  """Row-normalised confusion matrices, model beside humans (log-scaled colours would hide the
  diagonal; a square-root scale shows both)."""
  fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
  for ax, (title, rates) in zip(axes, ((label, model_rates), ("CIFAR-10H humans", human_rates))):
    image = _matrix(ax, np.sqrt(rates), title, "Blues", 0, 1)
  axes[1].set_ylabel("")  # shared with the left panel
  fig.colorbar(image, ax=axes.tolist(), shrink=0.8, label="sqrt(rate)")
  return _save(fig, path)


def error_matrix(path: str, difference: np.ndarray, label: str) -> str:
  """Model minus human row-normalised confusions: red = the model confuses more."""
  fig, ax = plt.subplots(figsize=(5, 4.4))
  off = difference - np.diag(np.diag(difference))
  limit = max(float(np.abs(off).max()), 1e-6)
  image = _matrix(ax, off, f"error matrix: {label} - humans (off-diagonal)", "RdBu_r", -limit,
                  limit)
  fig.colorbar(image, ax=ax, shrink=0.8, label="rate difference")
  return _save(fig, path)


def classical_mds(square: np.ndarray, dims: int = 2) -> np.ndarray:
  """Torgerson MDS of a distance matrix [m, m] -> [m, dims] (numpy: no scikit-learn needed)."""
  m = len(square)
  centring = np.eye(m) - 1.0 / m
  b = -0.5 * centring @ (square ** 2) @ centring
  values, vectors = np.linalg.eigh(b)
  top = np.argsort(values)[::-1][:dims]
  return vectors[:, top] * np.sqrt(np.maximum(values[top], 0))


def mds_panels(path: str, squares: dict[str, np.ndarray]) -> str:
  """2-D classical MDS of each class-level RDM, one panel per RDM."""
  fig, axes = plt.subplots(1, len(squares), figsize=(3.6 * len(squares), 3.6), squeeze=False)
  for ax, (title, square) in zip(axes[0], squares.items()):
    xy = classical_mds(square)
    ax.scatter(xy[:, 0], xy[:, 1], c=range(len(xy)), cmap="tab10", s=25)
    for name, (x, y) in zip(CLASS_NAMES, xy):
      ax.annotate(name, (x, y), fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  return _save(fig, path)


def image_grid(path: str, grid: np.ndarray, title: str) -> str:
  fig, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.4))
  ax.imshow(np.clip(grid, 0, 1), interpolation="nearest")
  ax.set_title(title, fontsize=9)
  ax.axis("off")
  return _save(fig, path)
