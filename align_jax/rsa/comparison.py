"""Comparing RDMs: `compare(a, b, method)` for condensed RDMs, `rsa_score` from features.

Methods (N pairs):
  spearman       Pearson correlation of average ranks; ties exactly as scipy.stats.spearmanr
  rho-a          rsatoolbox's rho-a: 12 (r_a - m)'(r_b - m) / (N^3 - N), average ranks
  pearson        Pearson correlation of the distances (float64 sums)
  cosine         cosine similarity of the distance vectors
  kendall-tau-b  as scipy.stats.kendalltau (O(N log N), counted by scipy on the host)
  kendall-tau-a  (concordant - discordant) / (N (N - 1) / 2), from the same counts
A constant RDM makes every method but cosine undefined: InputError, not NaN.
"""

import math

import numpy as np
import scipy.spatial.distance as ssd
import scipy.stats

from align_jax.errors import InputError
from align_jax.rsa import checks, ranks
from align_jax.rsa import dissimilarity as rdm_lib
from align_jax.runtime import backend, names

METHODS = names.METHODS
RANK_METHODS = ("spearman", "rho-a")


def _check_method(method: str) -> None:
  if method not in METHODS:
    raise InputError(f"Unknown comparison method {method!r}; choose one of {METHODS}.")


def key_fn(values: np.ndarray):
  """(s, e) -> uint32 keys with the order of values[s:e]; exact for any real dtype."""
  if values.dtype == np.float32:
    return lambda s, e: ranks.order_keys(values[s:e])
  dense = np.unique(values, return_inverse=True)[1].reshape(-1).astype(np.uint32)
  return lambda s, e: dense[s:e]


def finish(method: str, cross: float, ss_a: int, ss_b: int, num: int) -> float:
  """Spearman or rho-a from sum(c_a c_b) and the sums of squared centred ranks."""
  for name, ss in (("a", ss_a), ("b", ss_b)):
    if ss == 0:
      raise InputError(f"RDM {name} is constant (all {num} distances tie): rank correlation "
                       "is undefined.")
  if method == "rho-a":
    return ranks.rho_a_from_sums(cross, num)
  return cross / (math.sqrt(ss_a) * math.sqrt(ss_b))


def _rank_sums_host(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int, int]:
  """(sum c_a c_b, sum c_a^2, sum c_b^2, N): one packed sort per RDM."""
  num = len(a)
  c_b, ties_b = ranks.ranks_of_words(ranks.pack_chunks(key_fn(b), ranks.index_payload, num))
  words = ranks.pack_chunks(key_fn(a), lambda s, e: c_b[s:e].view(np.uint32) + np.uint32(num), num)
  del c_b
  cross, ties_a = ranks.cross_of_words(words)
  return cross, ranks.sum_of_squares(num, ties_a), ranks.sum_of_squares(num, ties_b), num


def _linear(a: np.ndarray, b: np.ndarray, centre: bool) -> float:
  """Pearson (centre=True) or cosine of two vectors with float64 chunked sums."""
  chunks = range(0, len(a), ranks.CHUNK)
  parts = lambda f: math.fsum(f(slice(s, s + ranks.CHUNK)) for s in chunks)
  mean_a = parts(lambda sl: float(np.sum(a[sl], dtype=np.float64))) / len(a) if centre else 0.0
  mean_b = parts(lambda sl: float(np.sum(b[sl], dtype=np.float64))) / len(b) if centre else 0.0
  da = lambda sl: a[sl].astype(np.float64) - mean_a
  db = lambda sl: b[sl].astype(np.float64) - mean_b
  ab = parts(lambda sl: float(np.dot(da(sl), db(sl))))
  aa = parts(lambda sl: float(np.dot(da(sl), da(sl))))
  bb = parts(lambda sl: float(np.dot(db(sl), db(sl))))
  if aa == 0 or bb == 0:
    what = "constant" if centre else "all zero"
    raise InputError(f"An RDM is {what}: {'pearson' if centre else 'cosine'} is undefined.")
  return ab / math.sqrt(aa * bb)


def _kendall(a: np.ndarray, b: np.ndarray, variant: str) -> float:
  tau_b = scipy.stats.kendalltau(a, b, variant="b").statistic
  if not np.isfinite(tau_b):
    raise InputError("An RDM is constant: Kendall's tau is undefined.")
  if variant == "b":
    return float(tau_b)
  total = len(a) * (len(a) - 1) // 2
  tied = [sum(int(t) * (int(t) - 1) // 2 for t in np.unique(v, return_counts=True)[1])
          for v in (a, b)]
  return float(tau_b) * math.sqrt((total - tied[0]) * (total - tied[1])) / total


def _condensed_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
  va, vb = checks.as_condensed(a, "a"), checks.as_condensed(b, "b")
  if va.shape != vb.shape:
    raise InputError(f"RDMs differ in length: {va.size} vs {vb.size} pairs; they must describe "
                     "the same images in the same order.")
  return va, vb


def compare(a, b, method: str = "spearman") -> float:
  """Similarity of two condensed RDMs a, b [N] (same pair order) by `method` (see module)."""
  _check_method(method)
  va, vb = _condensed_pair(a, b)
  if method in RANK_METHODS:
    return finish(method, *_rank_sums(va, vb))
  if method in ("pearson", "cosine"):
    return _linear(va, vb, centre=method == "pearson")
  return _kendall(va, vb, method[-1])


def compare_methods(a, b, methods) -> dict[str, float]:
  """{method: compare(a, b, method)}; the rank methods share one ranking of a and b, so
  Spearman and rho-a together cost what one of them does."""
  for method in methods:
    _check_method(method)
  rank_methods = [m for m in methods if m in RANK_METHODS]
  scores = {m: compare(a, b, m) for m in methods if m not in RANK_METHODS}
  if rank_methods:
    sums = _rank_sums(*_condensed_pair(a, b))
    scores.update({m: finish(m, *sums) for m in rank_methods})
  return {m: scores[m] for m in methods}


def _rank_sums(va: np.ndarray, vb: np.ndarray) -> tuple[float, int, int, int]:
  if backend.rsa_on_host():
    return _rank_sums_host(va, vb)
  from align_jax.rsa import xla  # pylint: disable=g-import-not-at-top
  return xla.rank_sums(va, vb)


def _rank_source(source: rdm_lib.PairSource):
  """(panel -> centred ranks of its pairs, sum of squared ranks) for the RDM of `source`."""
  num = source.n * (source.n - 1) // 2
  if source.table is not None:
    c_distinct, c_same_row, ties, _ = ranks.table_ranks(source.distinct, source.counts)
    c_table = ssd.squareform(c_distinct, checks=False)
    np.fill_diagonal(c_table, c_same_row)
    c_table = c_table.astype(np.int32)
    return (lambda r0, r1, start: rdm_lib.table_panel(c_table, source.inverse, r0, r1),
            ranks.sum_of_squares(num, ties))
  values = rdm_lib.rdm_host(source)
  c, ties = ranks.ranks_of_words(ranks.pack_chunks(key_fn(values), ranks.index_payload, num))
  del values
  starts = checks.row_starts(source.n)
  lengths = {r0: int(starts[r1 - 1] + source.n - r1) - start for r0, r1, start in source.panels()}
  return (lambda r0, r1, start: c[start:start + lengths[r0]]), ranks.sum_of_squares(num, ties)


def rsa_score(features_a, features_b, metric: str = "correlation", method: str = "spearman",
              *, metric_b: str | None = None, block_size: int | None = None) -> float:
  """compare(rdm(features_a, metric), rdm(features_b, metric_b or metric), method).

  features_a [n, d_a], features_b [n, d_b], rows are the same images. On CPUs the Spearman
  and rho-a paths are fused: each panel of model distances goes straight into one packed
  array of (order key, centred rank in b), ranked by a counting sort or one sort, so neither
  float RDM is kept (about 8 bytes per pair at peak, plus 4 when features_b has mostly
  distinct rows). Returns the same number as the two-step form.
  """
  _check_method(method)
  source_a = rdm_lib.pair_source(features_a, metric, block_size, "features_a")
  source_b = rdm_lib.pair_source(features_b, metric_b or metric, block_size, "features_b")
  if source_a.n != source_b.n:
    raise InputError(f"features_a has {source_a.n} rows and features_b {source_b.n}; both must "
                     "hold the same images in the same order.")
  if method not in RANK_METHODS or not backend.rsa_on_host():
    return compare(rdm_lib.rdm_of(source_a), rdm_lib.rdm_of(source_b), method)
  num = source_a.n * (source_a.n - 1) // 2
  ranks_b, ss_b = _rank_source(source_b)
  words = np.empty(num, np.uint64)

  def fill(r0, r1, start):
    values = source_a.values(r0, r1)
    c_b = ranks_b(r0, r1, start)
    ranks.pack(ranks.order_keys(values), c_b.view(np.uint32) + np.uint32(num),
               words[start:start + len(values)])

  rdm_lib.for_each_panel(source_a, fill)
  cross, ties_a = ranks.cross_of_words(words)
  return finish(method, cross, ranks.sum_of_squares(num, ties_a), ss_b, num)
