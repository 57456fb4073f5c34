"""Representational dissimilarity matrices as condensed upper triangles (scipy `pdist` order).

Distances come from float32 matrix products at full float32 precision, one panel of rows at
a time, so peak memory is O(n * block + pairs) and never an n x n x d temporary. Rows that
repeat (human label distributions: 10,000 CIFAR-10H rows have only 2,923 distinct values) are
computed once on the distinct rows and gathered, so identical rows are exactly 0 apart.

Metrics (rows x, y of length d):
  euclidean      ||x - y||
  sqeuclidean    ||x - y||^2
  rsa_euclidean  ||x - y||^2 / d   (rsatoolbox's "euclidean")
  correlation    1 - Pearson(x, y)  (undefined for constant rows: InputError)
  cosine         1 - cos(x, y)      (undefined for all-zero rows: InputError)
"""

import dataclasses
from collections.abc import Iterator

import jax.numpy as jnp
import numpy as np

from align_jax.errors import InputError
from align_jax.rsa import checks

METRICS = ("euclidean", "sqeuclidean", "rsa_euclidean", "correlation", "cosine")
PANEL_BYTES = 4 << 20  # one float32 [block, n] panel; small temporaries reuse heap pages


def _check_metric(metric: str) -> None:
  if metric not in METRICS:
    raise InputError(f"Unknown RDM metric {metric!r}; choose one of {METRICS}.")


def default_block_size(n: int) -> int:
  """Rows per panel so one [block, n] float32 panel is about PANEL_BYTES."""
  return int(np.clip(PANEL_BYTES // (4 * n), 16, n))


@dataclasses.dataclass(frozen=True)
class Embedding:
  """Rows prepared so every metric is `offset - 2 * scale * <y_i, y_j>` plus norms.

  `y` [n, d] float32; `sq` [n] float32 squared norms (euclidean family) or None (angular).
  """
  y: np.ndarray
  sq: np.ndarray | None
  metric: str
  dims: int


def embed(x: np.ndarray, metric: str) -> Embedding:
  """float64 features [n, d] -> the float32 rows the panel kernels multiply."""
  _check_metric(metric)
  if metric in ("correlation", "cosine"):
    if metric == "correlation":
      x = x - x.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    zero = np.flatnonzero(norms <= 1e-12 * max(1.0, float(np.abs(x).max())))
    if zero.size:
      what = "constant" if metric == "correlation" else "all-zero"
      raise InputError(f"Rows {zero[:5].tolist()} of the features are {what}: {metric} "
                       "distance is undefined for them. Drop them or use 'euclidean'.")
    return Embedding((x / norms[:, None]).astype(np.float32), None, metric, x.shape[1])
  x = x - x.mean(axis=0)  # distances are translation invariant; centring limits cancellation
  sq = np.einsum("ij,ij->i", x, x).astype(np.float32)
  return Embedding(x.astype(np.float32), sq, metric, x.shape[1])


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


def _dense_segments(emb: Embedding, block: int) -> Iterator[tuple[int, np.ndarray]]:
  """Yields (first condensed index, float32 values) for each panel of rows, in pdist order."""
  y, n = emb.y, emb.y.shape[0]
  starts = checks.row_starts(n)
  for r0 in range(0, n - 1, block):
    r1 = min(r0 + block, n - 1)
    gram = y[r0:r1] @ y[r0:].T  # float32 BLAS GEMM, upper panel only
    sq = emb.sq
    panel = finish_distances(gram, None if sq is None else sq[r0:r1],
                             None if sq is None else sq[r0:], emb.metric, emb.dims)
    upper = np.arange(n - r0)[None, :] > np.arange(r1 - r0)[:, None]
    yield int(starts[r0]), panel[upper]


def distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
  """(unique rows [k, d], inverse [n], counts [k]) if at most half the rows are distinct.

  A wrapping 64-bit hash of each row's bytes rules out the common case (all rows distinct)
  in one pass; only then does the exact np.unique(axis=0) run.
  """
  n, d = x.shape
  multipliers = np.random.default_rng(0).integers(1, 2**63, d, dtype=np.uint64) | np.uint64(1)
  hashes = (np.ascontiguousarray(x).view(np.uint64) * multipliers).sum(axis=1, dtype=np.uint64)
  if len(np.unique(hashes)) > n // 2:
    return None
  unique, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
  if len(unique) > n // 2:
    return None
  return unique, inverse.reshape(-1), counts


def table_segments(table: np.ndarray, inverse: np.ndarray,
                   block: int) -> Iterator[tuple[int, np.ndarray]]:
  """Condensed segments of the RDM whose pair (i, j) is table[inverse[i], inverse[j]]."""
  n = len(inverse)
  starts = checks.row_starts(n)
  for r0 in range(0, n - 1, block):
    r1 = min(r0 + block, n - 1)
    panel = table[inverse[r0:r1]][:, inverse[r0:]]
    upper = np.arange(n - r0)[None, :] > np.arange(r1 - r0)[:, None]
    yield int(starts[r0]), panel[upper]


def square_table(x_distinct: np.ndarray, metric: str, block: int) -> np.ndarray:
  """Square float32 distances among distinct rows, exactly 0 on the diagonal."""
  k = len(x_distinct)
  table = np.zeros((k, k), np.float32)
  if k > 1:
    condensed = np.empty(k * (k - 1) // 2, np.float32)
    for start, values in _dense_segments(embed(x_distinct, metric), block):
      condensed[start:start + len(values)] = values
    iu = np.triu_indices(k, 1)
    table[iu] = condensed
    table.T[iu] = condensed
  return table


@dataclasses.dataclass(frozen=True)
class PairSource:
  """How the condensed RDM of some features is produced, segment by segment.

  Either dense panels of the features, or a table of distances among distinct rows plus
  each image's row id. `rdm` and the fused `rsa_score` share this, so their values agree
  bit for bit.
  """
  n: int
  block: int
  emb: Embedding | None = None
  table: np.ndarray | None = None
  inverse: np.ndarray | None = None
  counts: np.ndarray | None = None

  def segments(self) -> Iterator[tuple[int, np.ndarray]]:
    if self.table is not None:
      return table_segments(self.table, self.inverse, self.block)
    return _dense_segments(self.emb, self.block)


def pair_source(features, metric: str, block_size: int | None = None,
                name: str = "features") -> PairSource:
  """Validates features [n, d] and plans their RDM (tabled when at most n/2 rows differ)."""
  _check_metric(metric)
  x = checks.as_features(features, name)
  n = x.shape[0]
  if block_size is not None and block_size < 1:
    raise InputError(f"block_size={block_size} must be a positive number of rows.")
  block = int(block_size or default_block_size(n))
  distinct = distinct_rows(x)
  if distinct is not None:
    unique, inverse, counts = distinct
    table = square_table(unique, metric, default_block_size(len(unique)))
    return PairSource(n, block, table=table, inverse=inverse, counts=counts)
  return PairSource(n, block, emb=embed(x, metric))


def rdm_host(source: PairSource) -> np.ndarray:
  out = np.empty(source.n * (source.n - 1) // 2, np.float32)
  for start, values in source.segments():
    out[start:start + len(values)] = values
  return out


def rdm(features, metric: str = "correlation", *, block_size: int | None = None):
  """Condensed RDM of features [n, d] -> float32 [n (n - 1) / 2] in scipy `pdist` order.

  `block_size` rows are processed per panel (default: ~4 MB panels); the result does not
  depend on it beyond float32 rounding of the products.
  """
  source = pair_source(features, metric, block_size)
  if checks.on_host() or source.table is not None:
    return jnp.asarray(rdm_host(source))
  from align_jax.rsa import xla  # pylint: disable=g-import-not-at-top
  return xla.rdm_dense(source.emb, source.block)


def square_from_rdm(condensed) -> np.ndarray:
  """Condensed [n (n - 1) / 2] -> symmetric square [n, n] with a zero diagonal."""
  v = np.asarray(condensed)
  if v.ndim != 1:
    raise InputError(f"Expected a condensed 1-D RDM; got shape {v.shape}.")
  n = checks.num_images(v.size)
  square = np.zeros((n, n), v.dtype)
  iu = np.triu_indices(n, 1)
  square[iu] = v
  square.T[iu] = v
  return square


def rdm_from_square(square, *, atol: float = 1e-6) -> np.ndarray:
  """Symmetric square [n, n] with a zero diagonal -> condensed upper triangle (pdist order)."""
  m = np.asarray(square)
  if m.ndim != 2 or m.shape[0] != m.shape[1]:
    raise InputError(f"Expected a square matrix; got shape {m.shape}.")
  if not np.allclose(m, m.T, atol=atol) or np.any(np.abs(np.diag(m)) > atol):
    raise InputError("Not an RDM: the matrix must be symmetric with a zero diagonal.")
  return m[np.triu_indices(m.shape[0], 1)]


def class_rdm(features, labels, metric: str = "correlation"):
  """RDM of class-mean patterns: features [n, d], labels [n] -> condensed over sorted classes."""
  x = checks.as_features(features)
  labels = np.asarray(labels).reshape(-1)
  if labels.shape[0] != x.shape[0]:
    raise InputError(f"labels has {labels.shape[0]} entries for {x.shape[0]} feature rows.")
  classes = np.unique(labels)
  if len(classes) < 3:
    raise InputError(f"class_rdm needs at least 3 classes; labels hold {len(classes)}.")
  means = np.stack([x[labels == c].mean(axis=0) for c in classes])
  return rdm(means, metric)
