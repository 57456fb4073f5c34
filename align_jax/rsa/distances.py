"""Distance formulas of the RDM kernels, shared by the host (numpy) and the device (jitted)
paths: rows are embedded once so that every metric is a function of inner products and norms.

Metrics (rows x, y of length d):
  euclidean      ||x - y||
  sqeuclidean    ||x - y||^2
  rsa_euclidean  ||x - y||^2 / d   (rsatoolbox's "euclidean")
  correlation    1 - Pearson(x, y)  (undefined for constant rows: InputError)
  cosine         1 - cos(x, y)      (undefined for all-zero rows: InputError)
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from align_jax.errors import InputError
from align_jax.runtime import names

METRICS = names.METRICS
LOW_DIMS = 64  # rows this short get float64 products on the host


def check_metric(metric: str) -> None:
  if metric not in METRICS:
    raise InputError(f"Unknown RDM metric {metric!r}; choose one of {METRICS}.")


@dataclasses.dataclass(frozen=True)
class Embedding:
  """Rows prepared so every metric is `offset - 2 * scale * <y_i, y_j>` plus norms.

  `y` [n, d] float32; `sq` [n] float32 squared norms (euclidean family) or None (angular).
  """
  y: np.ndarray
  sq: np.ndarray | None
  metric: str
  dims: int


def embed(x: np.ndarray, metric: str, dtype=np.float32) -> Embedding:
  """float64 features [n, d] -> the rows (in `dtype`) the panel kernels multiply."""
  check_metric(metric)
  if metric in ("correlation", "cosine"):
    if metric == "correlation":
      x = x - x.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    zero = np.flatnonzero(norms <= 1e-12 * max(1.0, float(np.abs(x).max())))
    if zero.size:
      what = "constant" if metric == "correlation" else "all-zero"
      raise InputError(f"Rows {zero[:5].tolist()} of the features are {what}: {metric} "
                       "distance is undefined for them. Drop them or use 'euclidean'.")
    return Embedding((x / norms[:, None]).astype(dtype), None, metric, x.shape[1])
  x = x - x.mean(axis=0)  # distances are translation invariant; centring limits cancellation
  sq = np.einsum("ij,ij->i", x, x).astype(dtype)
  return Embedding(x.astype(dtype), sq, metric, x.shape[1])


def host_dtype(dims: int):
  """float64 products for low-dimensional rows (cheap, and free of the cancellation that
  reorders near-equal small distances, e.g. between label distributions); float32 else."""
  return np.float64 if dims <= LOW_DIMS else np.float32


def finish_distances(gram, sq_rows, sq_cols, metric: str, dims: int, xp=np):
  """Turns inner products [b, m] into distances, in place where `xp` is numpy."""
  if sq_rows is None:
    return 1.0 - gram if xp is not np else np.subtract(1.0, gram, out=gram)
  if xp is not np:
    d = jnp.maximum(sq_rows[:, None] + sq_cols[None, :] - 2.0 * gram, 0.0)
    if metric == "euclidean":
      return jnp.sqrt(d)
    return d / dims if metric == "rsa_euclidean" else d
  gram *= -2.0
  gram += sq_rows[:, None]
  gram += sq_cols[None, :]
  np.maximum(gram, 0.0, out=gram)
  if metric == "euclidean":
    np.sqrt(gram, out=gram)
  elif metric == "rsa_euclidean":
    gram /= dims
  return gram
