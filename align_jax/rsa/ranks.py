"""Exact rank-correlation kernels on the host (numpy), the fast path on CPUs.

Conventions (N pairs): average ranks r (ties share the mean rank, exactly like scipy), held as
integers c = 2 r - (N + 1), so a tie run occupying sorted positions [s, e) has c = s + e - N
and sum(c) = 0. Then
  Spearman = sum(c_a c_b) / sqrt(sum(c_a^2) sum(c_b^2)),
  rho-a    = 12 (r_a - m)'(r_b - m) / (N^3 - N) = 3 sum(c_a c_b) / (N^3 - N),
  sum(c^2) = (N^3 - N - sum over tie runs of (t^3 - t)) / 3, exact in Python integers.
sum(c_a c_b) adds exact int64 per-run sums, multiplied in float64 chunk by chunk.

Speed (see ../shared/research/rsa-performance.md): argsort and XLA:CPU sorts are slow, so
values are mapped to order-preserving uint32 keys and sorted as packed uint64 words
(key << 32 | payload) with numpy's in-place sort. Spearman then needs only ONE such sort of
the model RDM, whose payload is the other RDM's centred rank.
"""

import concurrent.futures
import functools
import math
import os

import numpy as np

CHUNK = 1 << 20  # elements per streaming step: temporaries stay small enough to reuse heap pages


def order_keys(values: np.ndarray) -> np.ndarray:
  """float32 -> uint32 with the same order (-0 == +0; finite inputs assumed)."""
  bits = (values.astype(np.float32) + np.float32(0.0)).view(np.uint32)
  flip = (bits.view(np.int32) >> 31).view(np.uint32)  # all ones for negatives, else 0
  flip |= np.uint32(0x80000000)
  flip ^= bits
  return flip


def words_view(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(high, low) uint32 views of uint64 words (little-endian), for cheap packing/unpacking."""
  halves = words.view(np.uint32).reshape(-1, 2)
  return halves[:, 1], halves[:, 0]


def tie_correction(run_lengths: list[np.ndarray]) -> int:
  """sum(t^3 - t) over tie runs, exactly (Python integers)."""
  total = 0
  for lengths in run_lengths:
    sizes, count = np.unique(lengths[lengths > 1], return_counts=True)
    total += sum((int(t) ** 3 - int(t)) * int(c) for t, c in zip(sizes, count))
  return total


def sum_of_squares(num: int, ties: int) -> int:
  """sum(c^2) of centred ranks of num values with tie correction `ties`."""
  return (num ** 3 - num - ties) // 3


def _runs(sorted_words: np.ndarray):
  """Yields (offset, high, low, run starts) chunk by chunk; no tie run is split across chunks."""
  num = len(sorted_words)
  high_all, low_all = words_view(sorted_words)
  pos = 0
  while pos < num:
    end = min(pos + CHUNK, num)
    if end < num:
      key = int(high_all[end - 1])
      end = num if key == 0xFFFFFFFF else int(
          np.searchsorted(sorted_words, np.uint64((key + 1) << 32), side="left"))
    chunk = sorted_words[pos:end]
    starts = np.flatnonzero((chunk[1:] ^ chunk[:-1]) >= np.uint64(1 << 32)) + 1
    yield pos, high_all[pos:end], low_all[pos:end], np.concatenate([[0], starts])
    pos = end


def pack(keys: np.ndarray, payload: np.ndarray, out: np.ndarray) -> None:
  """out[:] = key << 32 | payload (uint64), keys uint32 and payload in [0, 2^32)."""
  high, low = words_view(out)
  high[:] = keys
  low[:] = payload


def pack_chunks(keys_fn, payload_fn, num: int) -> np.ndarray:
  """uint64 [num] packed from keys_fn(s, e) and payload_fn(s, e), CHUNK elements at a time."""
  words = np.empty(num, np.uint64)
  for s in range(0, num, CHUNK):
    e = min(s + CHUNK, num)
    pack(keys_fn(s, e), payload_fn(s, e), words[s:e])
  return words


def index_payload(s: int, e: int) -> np.ndarray:
  return np.arange(s, e, dtype=np.uint32)


def ranks_of_words(words: np.ndarray) -> tuple[np.ndarray, int]:
  """Sorts words (key << 32 | position) in place -> (centred ranks int32 [N], tie correction)."""
  num = len(words)
  words.sort()
  c = np.empty(num, np.int32)
  lengths = []
  for pos, _, position, starts in _runs(words):
    t = np.diff(np.append(starts, len(position)))
    c[position] = np.repeat((2 * (pos + starts) + t - num).astype(np.int32), t)
    lengths.append(t)
  return c, tie_correction(lengths)


def _sorted_runs(words: np.ndarray, num_total: int) -> tuple[np.ndarray, ...]:
  """Sorts words (key << 32 | c_b + N) in place -> per distinct key: (key, count, sum of c_b)."""
  words.sort()
  keys, counts, sums = [], [], []
  for _, high, shifted_c_b, starts in _runs(words):
    t = np.diff(np.append(starts, len(high)))
    keys.append(high[starts])
    counts.append(t)
    low = np.ascontiguousarray(shifted_c_b).astype(np.int64)
    sums.append(np.add.reduceat(low, starts) - num_total * t)
  return np.concatenate(keys), np.concatenate(counts), np.concatenate(sums)


def cross_of_words(words: np.ndarray, parts: int | None = None) -> tuple[float, int]:
  """Sorts words (key_a << 32 | c_b + N) in place -> (sum(c_a c_b), tie correction of a).

  This is the one sort Spearman needs: c_a follows from the tie runs of key_a, and the c_b
  of each run arrive as its payloads. The words are sorted in `parts` slices on as many
  threads (numpy releases the GIL while sorting); the per-key run lists are then merged,
  which is cheap because the model RDM has far fewer distinct keys than pairs.
  """
  num = len(words)
  parts = max(1, min(parts or os.cpu_count() or 1, num // CHUNK))
  with concurrent.futures.ThreadPoolExecutor(parts) as pool:
    results = list(pool.map(functools.partial(_sorted_runs, num_total=num),
                            np.array_split(words, parts)))
  keys, counts, sums = (np.concatenate(r) for r in zip(*results))
  if parts > 1:
    merged = pack_chunks(lambda s, e: keys[s:e], index_payload, len(keys))
    merged.sort()
    high, order = words_view(merged)
    starts = np.concatenate([[0], np.flatnonzero(high[1:] != high[:-1]) + 1])
    order = order.astype(np.int64)
    counts = np.add.reduceat(counts[order], starts)
    sums = np.add.reduceat(sums[order], starts)
  before = np.cumsum(counts) - counts
  run_c = (2 * before + counts - num).astype(np.float64)
  partial = [float(np.dot(run_c[s:s + CHUNK], sums[s:s + CHUNK].astype(np.float64)))
             for s in range(0, len(run_c), CHUNK)]
  return math.fsum(partial), tie_correction([counts])


def table_ranks(table: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, int, int]:
  """Centred ranks of an RDM given as distances among distinct rows.

  table [k, k] float32 (zero diagonal), counts [k] images per distinct row. Pair (i, j) of
  images with rows u, v has value table[u, v]; entry (u, v), u < v, stands for counts[u] *
  counts[v] pairs and (u, u) for counts[u] (counts[u] - 1) / 2. Returns (c table [k, k] int32,
  tie correction, number of pairs), exactly as if every pair had been ranked.
  """
  k = len(counts)
  m = counts.astype(np.int64)
  upper = np.triu(np.ones((k, k), bool))
  weights = np.outer(m, m)
  weights[np.diag_indices(k)] = m * (m - 1) // 2
  flat = np.flatnonzero(upper & (weights > 0))  # entries (u <= v) that stand for some pairs
  weights = weights.reshape(-1)[flat]
  words = pack_chunks(lambda s, e: order_keys(table.reshape(-1)[flat[s:e]]),
                      index_payload, len(flat))
  words.sort()
  keys, order = words_view(words)
  order = order.astype(np.int64)
  starts = np.concatenate([[0], np.flatnonzero(keys[1:] != keys[:-1]) + 1])
  run_weight = np.add.reduceat(weights[order], starts)
  num = int(run_weight.sum())
  run_c = (2 * (np.cumsum(run_weight) - run_weight) + run_weight - num).astype(np.int32)
  c_upper = np.zeros(k * k, np.int32)
  c_upper[flat[order]] = np.repeat(run_c, np.diff(np.append(starts, len(keys))))
  c_upper = c_upper.reshape(k, k)
  c_table = c_upper + c_upper.T
  c_table[np.diag_indices(k)] = np.diag(c_upper)
  return c_table, tie_correction([run_weight]), num


def spearman_from_sums(cross: float, ties_a: int, ties_b: int, num: int) -> float:
  denominator = math.sqrt(sum_of_squares(num, ties_a)) * math.sqrt(sum_of_squares(num, ties_b))
  return cross / denominator


def rho_a_from_sums(cross: float, num: int) -> float:
  return 3.0 * cross / (num ** 3 - num)
