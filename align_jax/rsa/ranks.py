"""Exact rank-correlation kernels on the host (numpy), the fast path on CPUs.

Conventions (N pairs): average ranks r (ties share the mean rank, exactly like scipy), held as
integers c = 2 r - (N + 1), so a tie run occupying sorted positions [s, e) has c = s + e - N
and sum(c) = 0. Then
  Spearman = sum(c_a c_b) / sqrt(sum(c_a^2) sum(c_b^2)),
  rho-a    = 12 (r_a - m)'(r_b - m) / (N^3 - N) = 3 sum(c_a c_b) / (N^3 - N),
  sum(c^2) = (N^3 - N - sum over tie runs of (t^3 - t)) / 3, exact in Python integers.
sum(c_a c_b) adds exact int64 per-run sums, multiplied in float64 chunk by chunk.

Speed (docs/benchmarks.md): argsort and XLA:CPU sorts are slow, so
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
MAX_KEY_RANGE = 1 << 26  # counting ranks need one int64 + one float64 bin per key value
BINS_PER_PAIR = 0.5  # ... and no more bin memory (16 B each) than the words (8 B per pair)


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
  """words (key_a << 32 | c_b + N) -> (sum(c_a c_b), tie correction of a); may sort in place.

  When a's keys span few enough values (see `_counting_fits`), a counting sort does it in
  O(N). Otherwise this is the one sort Spearman needs: c_a follows from the tie runs of key_a,
  and the c_b of each run arrive as its payloads. The words are sorted in `parts` slices on as many
  threads (numpy releases the GIL while sorting); the per-key run lists are then merged,
  which is cheap because the model RDM has far fewer distinct keys than pairs.
  """
  num = len(words)
  keys = words_view(words)[0]
  low, high = int(keys.min()), int(keys.max())
  if _counting_fits(high - low + 1, num):
    return _cross_by_counting(words, low, high)
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


def _counting_fits(span: int, num: int) -> bool:
  return span <= min(MAX_KEY_RANGE, num * BINS_PER_PAIR)


def _cross_by_counting(words: np.ndarray, low: int, high: int) -> tuple[float, int]:
  """cross_of_words by a counting sort of a's keys: O(N + key range), no comparison sort.

  Model RDMs hold float32 distances that concentrate in a narrow band of keys, so a histogram
  over [low, high] replaces the sort: per key value, its count gives the average rank and a
  weighted histogram the sum of c_b. Exact: every per-bin sum of c_b stays below 2^53.
  """
  num, span = len(words), high - low + 1

  def histogram(part: np.ndarray):  # one part per thread: bincount releases the GIL
    counts, sums = np.zeros(span, np.int64), np.zeros(span, np.float64)
    for s in range(0, len(part), 4 * CHUNK):
      keys, shifted_c_b = words_view(part[s:s + 4 * CHUNK])
      index = (keys - np.uint32(low)).astype(np.intp)  # bincount casts uint32 slowly itself
      counts += np.bincount(index, minlength=span)
      sums += np.bincount(index, weights=shifted_c_b.astype(np.float64) - num, minlength=span)
    return counts, sums

  parts = np.array_split(words, max(1, min(os.cpu_count() or 1, num // CHUNK)))
  with concurrent.futures.ThreadPoolExecutor(len(parts)) as pool:
    counts, sums = (sum(h) for h in zip(*pool.map(histogram, parts)))
  present = np.flatnonzero(counts)
  counts, sums = counts[present], sums[present]
  run_c = (2 * (np.cumsum(counts) - counts) + counts - num).astype(np.float64)
  partial = [float(np.dot(run_c[s:s + CHUNK], sums[s:s + CHUNK]))
             for s in range(0, len(run_c), CHUNK)]
  return math.fsum(partial), tie_correction([counts])


def table_ranks(condensed: np.ndarray, counts: np.ndarray,
                same_row: np.ndarray | None = None) -> tuple[np.ndarray, float, int, int]:
  """Centred ranks of an RDM given by the distances among its distinct rows.

  condensed [k (k - 1) / 2] float32: distances among k distinct rows (pdist order); counts [k]
  images per distinct row. Images with rows u != v form counts[u] * counts[v] pairs of value
  condensed[(u, v)]; images sharing row u form same_row[u] pairs at 0 (default counts[u]
  (counts[u] - 1) / 2; a bootstrap multiset passes its own). Returns (condensed centred ranks
  as float64 (exact integers), the centred rank of the 0-distance same-row pairs, tie
  correction, number of pairs), as if every pair were ranked.
  """
  k = len(counts)
  m = counts.astype(np.int64)
  if same_row is None:
    same_row = m * (m - 1) // 2
  weights = np.concatenate([np.repeat(m[:-1], np.arange(k - 1, 0, -1)) *
                            np.concatenate([m[u + 1:] for u in range(k - 1)] or [m[:0]]),
                            [same_row.sum()]])
  values = np.concatenate([condensed.astype(np.float32), np.zeros(1, np.float32)])
  words = pack_chunks(lambda s, e: order_keys(values[s:e]), index_payload, len(values))
  words.sort()
  keys, order = words_view(words)
  order = order.astype(np.int64)
  starts = np.concatenate([[0], np.flatnonzero(keys[1:] != keys[:-1]) + 1])
  run_weight = np.add.reduceat(weights[order], starts)
  num = int(run_weight.sum())
  run_c = 2 * (np.cumsum(run_weight) - run_weight) + run_weight - num
  c = np.empty(len(values), np.float64)
  c[order] = np.repeat(run_c, np.diff(np.append(starts, len(keys))))
  return c[:-1], float(c[-1]), tie_correction([run_weight[run_weight > 0]]), num


def rho_a_from_sums(cross: float, num: int) -> float:
  return 3.0 * cross / (num ** 3 - num)
