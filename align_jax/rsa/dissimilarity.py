"""Representational dissimilarity matrices as condensed upper triangles (scipy `pdist` order).

Distances come from matrix products, one panel of rows at a time, so peak memory is
O(n * block + pairs) and never an n x n x d temporary: float32 at full precision (never TF32)
for wide features, float64 on the host for rows of at most 64 values. Results are stored as
float32. Rows that repeat (human label distributions: 10,000 CIFAR-10H rows have only 2,923
distinct values) are computed once, by scipy's float64 pdist on the distinct rows, and
gathered, so identical rows are exactly 0 apart and human RDMs match scipy's to float32
rounding.

Metrics: rsa/distances.py.
"""

import concurrent.futures
import dataclasses
import os

import jax.numpy as jnp
import numpy as np
import scipy.spatial.distance as ssd

from align_jax.errors import InputError
from align_jax.rsa import checks, distances, xla
from align_jax.runtime import backend

SCIPY_METRIC = {"euclidean": "euclidean", "sqeuclidean": "sqeuclidean",
                "rsa_euclidean": "sqeuclidean", "correlation": "correlation", "cosine": "cosine"}
PANEL_BYTES = 4 << 20  # one float32 [block, n] panel; small temporaries reuse heap pages


def default_block_size(n: int) -> int:
  """Rows per panel so one [block, n] float32 panel is about PANEL_BYTES."""
  return int(np.clip(PANEL_BYTES // (4 * n), 16, n))


def _upper(panel: np.ndarray, n: int, r0: int) -> np.ndarray:
  """The pairs (i, j > i) of panel rows r0.. over columns r0..n-1, in pdist order."""
  return panel[np.arange(n - r0)[None, :] > np.arange(panel.shape[0])[:, None]]


def dense_panel(emb: distances.Embedding, r0: int, r1: int) -> np.ndarray:
  """float32 distances of the pairs of rows r0..r1-1 (pdist order), from one GEMM."""
  y, sq = emb.y, emb.sq
  gram = y[r0:r1] @ y[r0:].T  # BLAS GEMM over the upper panel only
  panel = distances.finish_distances(gram, None if sq is None else sq[r0:r1],
                           None if sq is None else sq[r0:], emb.metric, emb.dims)
  return _upper(panel, len(y), r0).astype(np.float32, copy=False)


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


def table_panel(table: np.ndarray, inverse: np.ndarray, r0: int, r1: int) -> np.ndarray:
  """Values table[inverse[i], inverse[j]] of the pairs of rows r0..r1-1 (pdist order)."""
  return _upper(table[inverse[r0:r1]][:, inverse[r0:]], len(inverse), r0)


def distinct_distances(x_distinct: np.ndarray, metric: str) -> np.ndarray:
  """Condensed float32 distances among distinct rows, by scipy's float64 pdist."""
  distances.embed(x_distinct, metric)  # validates the rows (constant rows for correlation, ...)
  condensed = ssd.pdist(x_distinct, SCIPY_METRIC[metric]) if len(x_distinct) > 1 else np.zeros(0)
  if metric == "rsa_euclidean":
    condensed /= x_distinct.shape[1]
  return condensed.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class PairSource:
  """How the condensed RDM of some features is produced, panel by panel of rows.

  Either dense panels of the features, or a table of distances among distinct rows plus
  each image's row id. `rdm` and the fused `rsa_score` share this, so their values agree
  bit for bit.
  """
  n: int
  block: int
  emb: distances.Embedding | None = None
  distinct: np.ndarray | None = None  # condensed distances among distinct rows
  table: np.ndarray | None = None  # the same as a square matrix, exactly 0 on the diagonal
  inverse: np.ndarray | None = None  # row id of each image
  counts: np.ndarray | None = None  # images per distinct row

  def panels(self) -> list[tuple[int, int, int]]:
    """(first row, end row, first condensed index) of each panel of `block` rows."""
    starts = checks.row_starts(self.n)
    return [(r0, min(r0 + self.block, self.n - 1), int(starts[r0]))
            for r0 in range(0, self.n - 1, self.block)]

  def values(self, r0: int, r1: int) -> np.ndarray:
    if self.table is not None:
      return table_panel(self.table, self.inverse, r0, r1)
    return dense_panel(self.emb, r0, r1)


def for_each_panel(source: PairSource, work) -> None:
  """Calls work(r0, r1, start) for every panel on a thread per core (numpy and BLAS release
  the GIL, so the elementwise passes around each GEMM run in parallel)."""
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    for done in pool.map(lambda panel: work(*panel), source.panels()):
      del done


def pair_source(features, metric: str, block_size: int | None = None,
                name: str = "features") -> PairSource:
  """Validates features [n, d] and plans their RDM (tabled when at most n/2 rows differ)."""
  distances.check_metric(metric)
  x = checks.as_features(features, name)
  n = x.shape[0]
  if block_size is not None and block_size < 1:
    raise InputError(f"block_size={block_size} must be a positive number of rows.")
  block = int(block_size or default_block_size(n))
  distinct = distinct_rows(x)
  if distinct is not None:
    unique, inverse, counts = distinct
    distinct = distinct_distances(unique, metric)
    return PairSource(n, block, distinct=distinct, table=ssd.squareform(distinct),
                      inverse=inverse, counts=counts)
  dtype = distances.host_dtype(x.shape[1]) if backend.rsa_on_host() else np.float32
  return PairSource(n, block, emb=distances.embed(x, metric, dtype))


def rdm_host(source: PairSource) -> np.ndarray:
  out = np.empty(source.n * (source.n - 1) // 2, np.float32)

  def fill(r0, r1, start):
    values = source.values(r0, r1)
    out[start:start + len(values)] = values

  for_each_panel(source, fill)
  return out


def rdm(features, metric: str = "correlation", *, block_size: int | None = None):
  """Condensed RDM of features [n, d] -> float32 [n (n - 1) / 2] in scipy `pdist` order.

  `block_size` rows are processed per panel (default: ~4 MB panels); the result does not
  depend on it beyond float32 rounding of the products.
  """
  return rdm_of(pair_source(features, metric, block_size))


def rdm_of(source: PairSource):
  """The condensed RDM a planned source describes: numpy kernels on CPUs and for tables,
  jitted panels on accelerators."""
  if backend.rsa_on_host() or source.table is not None:
    return jnp.asarray(rdm_host(source))
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
