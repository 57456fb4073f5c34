"""Figures of the alignment report. Matplotlib only: arrays in, PNG files out, nothing computed
beyond display transforms (rank-percentiles for heatmaps, classical MDS coordinates)."""

import os

import matplotlib
import numpy as np
import scipy.stats

from align_jax.training import samples

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


def _class_axes(ax, labels: np.ndarray, names: bool) -> None:
  """Class boundaries as white lines; with `names`, class names centred on each block."""
  edges = np.flatnonzero(np.diff(labels)) + 0.5
  for e in edges:
    ax.axhline(e, color="white", linewidth=0.5)
    ax.axvline(e, color="white", linewidth=0.5)
  bounds = np.concatenate([[-0.5], edges, [len(labels) - 0.5]])
  centres = (bounds[:-1] + bounds[1:]) / 2
  classes = [CLASS_NAMES[c] for c in labels[np.concatenate([[0], edges + 0.5]).astype(int)]]
  ax.set_xticks(centres, classes, rotation=90, fontsize=7)
  ax.set_yticks(centres, classes if names else [], fontsize=7)
  ax.tick_params(length=0)


def rdm_heatmaps(path: str, panels: dict[str, np.ndarray], labels: np.ndarray) -> str:
  """Square RDMs [m, m] of the same images (already sorted by class), side by side, with the
  class boundaries and names marked."""
  fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 1.2, 4.4),
                           squeeze=False, layout="constrained")
  for k, (ax, (title, square)) in enumerate(zip(axes[0], panels.items())):
    image = ax.imshow(_percentiles(square), cmap="viridis", vmin=0, vmax=1,
                      interpolation="nearest")
    _class_axes(ax, labels, names=k == 0)
    ax.set_title(title, fontsize=9)
  fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="dissimilarity (rank percentile)")
  return _save(fig, path)


def alignment_bars(path: str, names: list[str], estimates: list[float],
                   ci_low: list[float | None], ci_high: list[float | None], ceiling: dict,
                   ylabel: str) -> str:
  """Bars with 95% CIs; the noise ceiling (results.json's entry: `ceiling`, `band`,
  `estimator`) as a line inside its grey band. The legend sits above the axes, off the band."""
  fig, ax = plt.subplots(figsize=(max(4.5, 0.7 * len(names) + 2), 4.4))
  x = np.arange(len(names))
  est = np.asarray(estimates)
  low = np.asarray([e if l is None else l for e, l in zip(est, ci_low)])
  high = np.asarray([e if h is None else h for e, h in zip(est, ci_high)])
  ax.bar(x, est, color="tab:blue", alpha=0.8, label="score (95% CI)")
  # A percentile CI need not contain the estimate; draw its ends, never negative bars.
  ax.errorbar(x, est, yerr=[np.maximum(est - low, 0), np.maximum(high - est, 0)], fmt="none",
              ecolor="black", capsize=3)
  ax.axhspan(*ceiling["band"], color="grey", alpha=0.3, label="noise-ceiling band")
  ax.axhline(ceiling["ceiling"], color="dimgrey", linewidth=1.2,
             label=f"noise ceiling ({ceiling['estimator']}) {ceiling['ceiling']:.3f}")
  ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
  ax.set_ylabel(ylabel)
  ax.set_ylim(min(0.0, float(low.min()) - 0.02), max(1.0, ceiling["band"][1] + 0.02))
  ax.axhline(0, color="black", linewidth=0.5)
  # Above the axes: clear of the ceiling band and of long tick labels below.
  ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.01), fontsize=8, ncol=3, frameon=False)
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
  diagonal; a square-root scale shows both). The panels share the class axis."""
  fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.6), layout="constrained")
  for ax, (title, rates) in zip(axes, ((label, model_rates), ("CIFAR-10H humans", human_rates))):
    image = _matrix(ax, np.sqrt(rates), title, "Blues", 0, 1)
  axes[1].set_ylabel("")  # the left panel names the rows for both
  axes[1].tick_params(labelleft=False)
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


def _spread_labels(xy: np.ndarray, width: float, height: float, steps: int = 200) -> np.ndarray:
  """Label positions just above their points without overlapping boxes of width x height:
  overlapping pairs push apart along their offset, and each label is pulled back toward its
  home above its point. (Ten labels; a few lines instead of a dependency such as adjustText.)"""
  home = xy.astype(np.float64) + np.array([0.0, 0.8 * height])
  pos = home.copy()
  for _ in range(steps):
    moved = False
    for i in range(len(pos)):
      for j in range(i + 1, len(pos)):
        dx, dy = pos[j] - pos[i]
        overlap_x, overlap_y = width - abs(dx), height - abs(dy)
        if overlap_x > 0 and overlap_y > 0:
          moved = True
          if overlap_y < overlap_x:  # separate along the axis that needs less movement
            shift = np.array([0.0, overlap_y / 2 * (1 if dy >= 0 else -1)])
          else:
            shift = np.array([overlap_x / 2 * (1 if dx >= 0 else -1), 0.0])
          pos[i] -= shift
          pos[j] += shift
    pos += 0.05 * (home - pos)
    if not moved:
      break
  return pos


def mds_panels(path: str, squares: dict[str, np.ndarray]) -> str:
  """2-D classical MDS of each class-level RDM, one panel per RDM, labels kept apart."""
  fig, axes = plt.subplots(1, len(squares), figsize=(3.8 * len(squares), 3.8), squeeze=False,
                           layout="constrained")
  for ax, (title, square) in zip(axes[0], squares.items()):
    xy = classical_mds(square)
    ax.scatter(xy[:, 0], xy[:, 1], c=range(len(xy)), cmap="tab10", s=25)
    span = np.ptp(xy, axis=0) + 1e-12
    ax.set_xlim(xy[:, 0].min() - 0.25 * span[0], xy[:, 0].max() + 0.25 * span[0])
    ax.set_ylim(xy[:, 1].min() - 0.15 * span[1], xy[:, 1].max() + 0.25 * span[1])
    # label boxes in data units: ~1/5 of the panel wide, ~1/14 high at fontsize 7
    where = _spread_labels(xy, 0.3 * span[0] * 0.8, 0.11 * span[1])
    for name, point, label_xy in zip(CLASS_NAMES, xy, where):
      ax.annotate(name, point, xytext=label_xy, fontsize=7, ha="center", va="center",
                  arrowprops=dict(arrowstyle="-", color="grey", linewidth=0.5,
                                  shrinkA=0, shrinkB=2))
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  return _save(fig, path)


def image_grid(path: str, grid: np.ndarray, title: str, name: str) -> str:
  """A VAE image grid `name` (training/samples.py) with its title and column titles."""
  return _save(samples.grid_figure(grid, title, samples.COLUMN_TITLES.get(name)), path)
