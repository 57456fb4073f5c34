"""The RSA kernels for accelerators, in jitted JAX (used where the default backend is no CPU).

- Distances: fixed-shape [block, n] panels from `jnp.dot(..., precision=HIGHEST)` (full float32,
  never TF32), gathered into condensed order and written with dynamic_update_slice, so one
  compilation serves every panel and memory stays O(n * block + pairs).
- Ranks: `lax.sort` of (uint32 key, int32 position) with a plain unsigned comparator, the form
  XLA:GPU lowers to a CUB radix sort (a float argsort is not); tie runs from cummax/cummin;
  sums in float64 (x64 enabled only inside these kernels; every |c_a c_b| < 2^53 is exact).
On a CPU these kernels are correct but slower than the numpy path; tests run them there.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from align_jax.rsa import checks, distances


def panel_pairs(y, y_padded, sq, sq_padded, r0, *, metric: str, dims: int, block: int):
  """The condensed pairs of rows r0..r0+block-1, in order: [block * (n - 1)].

  y [n, d] are the columns; y_padded has `block` extra zero rows so the row slice of the
  last panel stays in bounds. Pairs of rows past n - 2 fall beyond the real segment and are
  overwritten by the next panel or cut off at the end.
  """
  n = y.shape[0]
  rows = lax.dynamic_slice_in_dim(y_padded, r0, block)
  gram = jnp.dot(rows, y.T, precision=lax.Precision.HIGHEST)
  sq_rows = None if sq is None else lax.dynamic_slice_in_dim(sq_padded, r0, block)
  panel = distances.finish_distances(gram, sq_rows, sq, metric, dims, xp=jnp)
  lengths = jnp.maximum(n - 1 - r0 - jnp.arange(block, dtype=jnp.int32), 0)
  offsets = jnp.cumsum(lengths) - lengths  # start of local row k within this segment
  position = jnp.arange(block * (n - 1), dtype=jnp.int32)
  row = jnp.clip(jnp.searchsorted(offsets, position, side="right") - 1, 0, block - 1)
  col = jnp.clip(r0 + row + 1 + position - offsets[row], 0, n - 1)
  return panel[row, col]


@functools.partial(jax.jit, static_argnames=("metric", "dims", "block"), donate_argnums=(0,))
def _write_panel(out, y, y_padded, sq, sq_padded, r0, *, metric: str, dims: int, block: int):
  """Writes panel_pairs(...) into `out` (length N + block * n) where pair (r0, r0 + 1) goes."""
  pairs = panel_pairs(y, y_padded, sq, sq_padded, r0, metric=metric, dims=dims, block=block)
  return lax.dynamic_update_slice(out, pairs, (panel_start(r0, y.shape[0]),))


def panel_start(r0, n: int):
  """Condensed index of pair (r0, r0 + 1): r0 * (2n - r0 - 1) / 2, in int32 without overflow.

  Of r0 and 2n - r0 - 1 exactly one is even; halving that one first keeps every product at
  most the result, which is below n(n-1)/2 < 2^31 for every n the checks accept (the direct
  r0 * n - r0 * (r0 + 1) / 2 passes 2^31 from n = 46,342 on).
  """
  r0 = jnp.asarray(r0, jnp.int32)
  other = 2 * n - 1 - r0
  even = r0 % 2 == 0
  return jnp.where(even, r0 // 2, r0) * jnp.where(even, other, other // 2)


def rdm_dense(emb: distances.Embedding, block: int) -> jax.Array:
  """Condensed float32 RDM of embedded rows on the default device."""
  n = emb.y.shape[0]
  block = min(block, n - 1)
  num = n * (n - 1) // 2
  y = jnp.asarray(emb.y)
  y_padded = jnp.asarray(np.pad(emb.y, ((0, block), (0, 0))))
  sq = None if emb.sq is None else jnp.asarray(emb.sq)
  sq_padded = None if emb.sq is None else jnp.asarray(np.pad(emb.sq, (0, block)))
  out = jnp.zeros(num + block * (n - 1), jnp.float32)
  for r0 in range(0, n - 1, block):
    out = _write_panel(out, y, y_padded, sq, sq_padded, jnp.int32(r0), metric=emb.metric,
                       dims=emb.dims, block=block)
  return out[:num]


def _keys(values: jax.Array) -> jax.Array:
  """float32 -> order-preserving uint32 (-0 == +0)."""
  bits = lax.bitcast_convert_type(values + jnp.float32(0.0), jnp.uint32)
  return jnp.where(bits >> 31 == 1, ~bits, bits | jnp.uint32(0x80000000))


def _centred_ranks(keys: jax.Array) -> jax.Array:
  """int32 c = 2 * average rank - (N + 1), ties averaged."""
  num = keys.shape[0]
  position = lax.iota(jnp.int32, num)
  sorted_keys, order = lax.sort((keys, position), num_keys=1, is_stable=False)
  new_run = jnp.concatenate([jnp.array([True]), sorted_keys[1:] != sorted_keys[:-1]])
  run_end = jnp.concatenate([sorted_keys[1:] != sorted_keys[:-1], jnp.array([True])])
  start = lax.cummax(jnp.where(new_run, position, 0))
  end = lax.cummin(jnp.where(run_end, position + 1, num), reverse=True)
  return jnp.zeros(num, jnp.int32).at[order].set(centred_rank(start, end, num))


def centred_rank(start, end, num: int):
  """2 * average rank - (num + 1) of a tie run over sorted positions start..end-1, in int32:
  (start - num) + end stays within +-num, where start + end passes 2^31 for num > 2^30 (an
  RDM of more than 46,341 images)."""
  return (start - num) + end


@jax.jit
def _sums(keys_a, keys_b):
  c_a = _centred_ranks(keys_a).astype(jnp.float64)
  c_b = _centred_ranks(keys_b).astype(jnp.float64)
  return jnp.dot(c_a, c_b), jnp.dot(c_a, c_a), jnp.dot(c_b, c_b)


def rank_sums(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int, int]:
  """(sum c_a c_b, sum c_a^2, sum c_b^2, N) computed on the default device."""
  with jax.enable_x64(True):
    keys = [_keys(jnp.asarray(v)) if v.dtype == np.float32 else
            jnp.asarray(np.unique(v, return_inverse=True)[1].reshape(-1).astype(np.uint32))
            for v in (a, b)]
    cross, ss_a, ss_b = _sums(*keys)
  return float(cross), int(round(float(ss_a))), int(round(float(ss_b))), len(a)



@jax.jit
def _joint_target_sums(rows, cols, last, multiplicity, starts, human_c, num_weight):
  """rsa/joint.py's target_sums as one jitted pass (x64 on): pair weights, the gather of the
  human ranks into the target's sorted order, running sums of w and w c_b, and each tie
  group's sums from the running sums at its last pair and at the previous group's last pair
  (pairs of weight 0 add nothing, so none is dropped here)."""
  i, j = rows.astype(jnp.int32), cols.astype(jnp.int32)
  w = (multiplicity[i] * multiplicity[j]).astype(jnp.int64)
  c_b = human_c[(starts[i] + j - i - 1).astype(jnp.int32)].astype(jnp.int64)
  cum_w, cum_v = jnp.cumsum(w), jnp.cumsum(w * c_b)
  position = lax.iota(jnp.int32, rows.shape[0])
  previous = lax.cummax(jnp.where(last, position, -1))  # the last group end at or before
  previous = jnp.concatenate([jnp.array([-1], jnp.int32), previous[:-1]])
  before_w = jnp.where(previous >= 0, cum_w[jnp.maximum(previous, 0)], 0)
  before_v = jnp.where(previous >= 0, cum_v[jnp.maximum(previous, 0)], 0)
  group_w = jnp.where(last, cum_w - before_w, 0).astype(jnp.float64)
  group_v = jnp.where(last, cum_v - before_v, 0).astype(jnp.float64)
  c_a = 2 * cum_w.astype(jnp.float64) - group_w - num_weight
  return jnp.sum(c_a * group_v), jnp.sum(group_w * group_w * group_w - group_w)


def on_device(pairs):
  """A joint.SortedPairs with its arrays on the default device."""
  return dataclasses.replace(pairs, rows=jnp.asarray(pairs.rows), cols=jnp.asarray(pairs.cols),
                             last=jnp.asarray(pairs.last))


def joint_target_sums(pairs, multiplicity: np.ndarray, human_c: np.ndarray,
                      num_weight: int) -> tuple[float, float]:
  """rsa/joint.py's target_sums (pairs: a joint.SortedPairs, best already on_device) on the
  default device."""
  starts = checks.row_starts(len(multiplicity))
  with jax.enable_x64(True):
    cross, ties = _joint_target_sums(
        jnp.asarray(pairs.rows), jnp.asarray(pairs.cols), jnp.asarray(pairs.last),
        jnp.asarray(multiplicity, jnp.int64), jnp.asarray(starts), jnp.asarray(human_c),
        jnp.int64(num_weight))
  return float(cross), float(ties)
