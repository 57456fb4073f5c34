"""One joint resampling pass: every target RDM scored against the human RDM on the same
bootstrap resamples and permutations, for the rank methods (Spearman and rho-a).

Bootstrap without re-sorting. A resample that draws image i m_i times weights pair (i, j) by
w = m_i m_j (a pair of an image with its own copy is dropped, as in rsatoolbox), and the scores
are those of the multiset holding each pair w times. Its average ranks follow from ONE global
sort of each fixed RDM: a tie group of weight W above groups of total weight S has the centred
rank c = 2 S + W - N_w (N_w = sum of w), and
  sum over the multiset of c_a c_b = sum over tie groups g of a of c_a(g) T_g,
  T_g = sum over the pairs p of g of w_p c_b(p),
so each target RDM is sorted once (kept as its pairs' images in ascending order, 5 bytes per
pair) and per resample costs one pass: pair weights from the drawn multiplicities, a gather of
the human side's centred ranks for the pairs of weight > 0 into its sorted order, and two
running sums; no sort. The human side is ranked once per resample and shared by every
target: with `images` by the same weighted ranks of its own global sort, with
`images+annotators` from the distances among the distinct redrawn label distributions of the
drawn images (`ranks.table_ranks`). A paired comparison is the per-resample difference of two
targets' scores, so every CI and paired test of a run comes from the same resamples.

Permutations: ranks do not change when images are permuted, so each permutation gathers the
human side's centred ranks (int32, row panels of a square) once and dots them with every
target's.

Resamples and permutations are drawn exactly as inference.py's expanded path draws them (same
seeds, same streams), and each score equals that path's re-ranking of the expanded multiset up
to float64 summation order (tests/test_joint.py).
"""

import concurrent.futures
import dataclasses
import math
import os
import time

import numpy as np
import scipy.spatial.distance as ssd

from align_jax.errors import InputError
from align_jax.rsa import annotators, checks, distances, ranks
from align_jax.rsa import comparison as compare_lib
from align_jax.rsa import dissimilarity as rdm_lib
from align_jax.runtime import backend
from align_jax.runtime.progress import Progress

END_FLAG = np.uint32(1 << 31)  # marks the last pair of a tie group in a sorted order
INDEX_MASK = np.uint32((1 << 31) - 1)
ANNOTATOR_STREAM = 0xA770  # seeds the annotator redraws apart from the image resamples


def draw_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """One bootstrap draw of n images: (sorted distinct images drawn, how often each was)."""
  return np.unique(rng.integers(0, n, n), return_counts=True)


def annotator_rng(seed: int) -> np.random.Generator:
  return np.random.default_rng([seed, ANNOTATOR_STREAM])


def redrawn_human(counts_drawn: np.ndarray, metric: str,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """The drawn images' annotators redrawn from their own counts -> (condensed distances among
  the distinct redrawn distributions, each drawn image's row among them)."""
  probs = annotators.distributions(annotators.redraw(counts_drawn, rng))
  unique, inverse = np.unique(probs, axis=0, return_inverse=True)
  return rdm_lib.distinct_distances(unique, metric), inverse.reshape(-1)


def _chunks(num: int):
  return ((s, min(s + ranks.CHUNK, num)) for s in range(0, num, ranks.CHUNK))


def sort_rdm(values: np.ndarray) -> np.ndarray:
  """One global sort of a condensed RDM: uint32 [N], the condensed index of each pair in
  ascending order of value, with END_FLAG set on the last pair of every tie group."""
  num = len(values)
  words = ranks.pack_chunks(compare_lib.key_fn(values), ranks.index_payload, num)
  words.sort()
  keys, index = ranks.words_view(words)
  order = np.empty(num, np.uint32)
  for s, e in _chunks(num):
    following = keys[s + 1:min(e + 1, num)]
    last = keys[s:s + len(following)] != following
    if e == num:
      last = np.append(last, True)
    order[s:e] = index[s:e] | (last.astype(np.uint32) << np.uint32(31))
  return order


def _group_weights(order: np.ndarray, weights: np.ndarray) -> np.ndarray:
  """Total weight of each tie group of a sorted order (int64 [groups]); weights per pair."""
  ends_total, carry = [], 0
  for s, e in _chunks(len(order)):
    flagged = order[s:e]
    running = np.cumsum(weights[flagged & INDEX_MASK], dtype=np.int64)
    running += carry
    ends_total.append(running[np.flatnonzero(flagged >= END_FLAG)])
    carry = int(running[-1])
  totals = np.concatenate(ends_total)
  return np.diff(totals, prepend=0)


def _tie_correction(group_weights: np.ndarray) -> float:
  """sum(W^3 - W) over tie groups, in float64 (exact integers would overflow int64)."""
  w = group_weights.astype(np.float64)
  return float(np.dot(w * w, w) - w.sum())


def weighted_ranks(order: np.ndarray, weights: np.ndarray, num_weight: int,
                   out: np.ndarray) -> float:
  """Centred ranks of the weighted multiset of a sorted RDM, written to out[condensed index]
  (int32); returns its tie correction."""
  group_weights = _group_weights(order, weights)
  group_c = (2 * np.cumsum(group_weights) - group_weights - num_weight).astype(np.int32)
  group = 0
  for s, e in _chunks(len(order)):
    flagged = order[s:e]
    last = (flagged >= END_FLAG).astype(np.int64)
    ids = np.cumsum(last) - last + group
    out[flagged & INDEX_MASK] = group_c[ids]
    group += int(last.sum())
  return _tie_correction(group_weights)


@dataclasses.dataclass(frozen=True)
class SortedPairs:
  """A target RDM sorted once: the images (i < j) of each pair in ascending order of value,
  and whether the pair is the last of its tie group (5 bytes per pair)."""
  rows: np.ndarray  # uint16 [N]
  cols: np.ndarray  # uint16 [N]
  last: np.ndarray  # bool [N]


def sorted_pairs(order: np.ndarray, n: int) -> SortedPairs:
  """SortedPairs of sort_rdm's order over n images."""
  num = len(order)
  starts = checks.row_starts(n).astype(np.int64)
  rows, cols, last = np.empty(num, np.uint16), np.empty(num, np.uint16), np.empty(num, bool)
  for s, e in _chunks(num):
    index = (order[s:e] & INDEX_MASK).astype(np.int64)
    i = np.searchsorted(starts, index, side="right") - 1
    rows[s:e] = i
    cols[s:e] = index - starts[i] + i + 1
    last[s:e] = order[s:e] >= END_FLAG
  return SortedPairs(rows, cols, last)


def target_sums(pairs: SortedPairs, multiplicity: np.ndarray, human_c: np.ndarray,
                num_weight: int) -> tuple[float, float]:
  """(sum of c_a c_b over the weighted multiset, tie correction of a) for one target, given
  the human side's centred ranks human_c [condensed] of this resample.

  One pass over the target's sorted pairs in chunks: pair weights m_i m_j from the images'
  multiplicities, the pairs of weight 0 dropped (about 60% in a bootstrap), a gather of
  human_c into sorted order (random access: most of the time), then running sums of w and
  w c_b read at the last kept pair of every tie group. Sums run on across chunks; a group
  whose last kept pair closes a chunk is emitted when its end is seen."""
  m = multiplicity.astype(np.uint16)  # m_i m_j <= 255^2 fits
  starts = checks.row_starts(len(m)).astype(np.int64)
  partial, ties = [], 0.0
  carry_w = carry_v = last_w = last_v = 0  # running sums; their values at the last emitted end

  def emit(end_w, end_v, group_w, group_v):
    nonlocal ties
    c_a = end_w.astype(np.float64)
    c_a *= 2
    c_a -= group_w
    c_a -= num_weight
    partial.append(float(np.dot(c_a, group_v.astype(np.float64))))
    ties += _tie_correction(group_w)

  for s, e in _chunks(len(pairs.rows)):
    i, j, last = pairs.rows[s:e], pairs.cols[s:e], pairs.last[s:e]
    w = np.take(m, i)
    w *= np.take(m, j)
    kept = np.flatnonzero(w)
    ends_before = np.cumsum(last, dtype=np.int32)  # tie groups ended up to each pair
    total = int(ends_before[-1])
    ends_before -= last
    group = ends_before[kept]
    if carry_w != last_w and total and (not len(kept) or group[0] > 0):
      # the group pending from the previous chunk ended before this chunk's first kept pair
      emit(np.array([carry_w]), np.array([carry_v]), np.array([carry_w - last_w]),
           np.array([carry_v - last_v]))
      last_w, last_v = carry_w, carry_v
    if not len(kept):
      continue
    i_kept = i[kept].astype(np.int64)
    index = starts[i_kept]
    index += j[kept]
    index -= i_kept + 1
    w_kept = w[kept].astype(np.int64)
    v = np.take(human_c, index).astype(np.int64)
    v *= w_kept
    cum_w, cum_v = np.cumsum(w_kept), np.cumsum(v)
    cum_w += carry_w
    cum_v += carry_v
    carry_w, carry_v = int(cum_w[-1]), int(cum_v[-1])
    is_end = np.empty(len(kept), bool)
    np.not_equal(group[1:], group[:-1], out=is_end[:-1])
    is_end[-1] = group[-1] < total
    ends = np.flatnonzero(is_end)
    if not len(ends):
      continue
    end_w, end_v = cum_w[ends], cum_v[ends]
    group_w, group_v = np.empty_like(end_w), np.empty_like(end_v)
    np.subtract(end_w[1:], end_w[:-1], out=group_w[1:])
    np.subtract(end_v[1:], end_v[:-1], out=group_v[1:])
    group_w[0], group_v[0] = end_w[0] - last_w, end_v[0] - last_v
    last_w, last_v = int(end_w[-1]), int(end_v[-1])
    emit(end_w, end_v, group_w, group_v)
  return math.fsum(partial), ties


def _pair_weights(multiplicity: np.ndarray) -> np.ndarray:
  """w[pair] = m_i m_j in condensed order (uint16; m <= 255 in any bootstrap of n images)."""
  n = len(multiplicity)
  out = np.empty(n * (n - 1) // 2, np.uint16)
  starts = checks.row_starts(n)
  m = multiplicity.astype(np.uint16)
  for i in range(n - 1):
    np.multiply(m[i], m[i + 1:], out=out[starts[i]:starts[i] + n - 1 - i])
  return out


class _FixedHuman:
  """The human side when only images are resampled: one global sort, weighted ranks per
  resample."""

  def __init__(self, order: np.ndarray):
    self.order = order

  def ranks(self, drawn, multiplicity, num_weight, out) -> float:
    del drawn
    return weighted_ranks(self.order, _pair_weights(multiplicity), num_weight, out)


class _RedrawnHuman:
  """The human side of a two-level bootstrap: each resample redraws the drawn images'
  annotators and ranks the distances among their distinct redrawn distributions."""

  def __init__(self, counts: np.ndarray, metric: str, seed: int):
    self.counts, self.metric, self.rng = counts, metric, annotator_rng(seed)

  def ranks(self, drawn, multiplicity, num_weight, out) -> float:
    distinct, inverse = redrawn_human(self.counts[drawn], self.metric, self.rng)
    m = multiplicity[drawn]
    per_row = np.bincount(inverse, weights=m).astype(np.int64)
    squares = np.bincount(inverse, weights=m * m).astype(np.int64)
    c_distinct, c_same_row, ties, num = ranks.table_ranks(
        distinct, per_row, same_row=(per_row * per_row - squares) // 2)
    assert num == num_weight, (num, num_weight)
    table = ssd.squareform(c_distinct.astype(np.int32), checks=False)
    np.fill_diagonal(table, int(c_same_row))
    rows = np.zeros(len(self.counts), np.intp)  # undrawn images: any row, their weight is 0
    rows[drawn] = inverse

    def fill(r0, r1, start):
      values = rdm_lib.table_panel(table, rows, r0, r1)
      out[start:start + len(values)] = values

    _for_each_panel(len(rows), fill)
    return float(ties)


def _for_each_panel(n: int, work) -> None:
  rdm_lib.for_each_panel(rdm_lib.PairSource(n, rdm_lib.default_block_size(n)), work)


@dataclasses.dataclass(frozen=True)
class JointResult:
  """Scores of every target against the human RDM: on all images, on each bootstrap resample
  and on each permutation, per method (columns in `methods` order)."""
  methods: tuple[str, ...]
  estimates: dict[str, dict[str, float]]
  bootstrap: dict[str, np.ndarray]  # target -> [n_bootstrap, methods]
  null: dict[str, np.ndarray]  # target -> [n_permutations, methods]
  seconds_per_resample: float
  seconds_per_permutation: float


def _scores(methods, cross: float, ties_a: float, ties_b: float, num: int) -> list[float]:
  ss = lambda ties: (num ** 3 - num - ties) / 3
  return [compare_lib.finish(m, cross, ss(ties_a), ss(ties_b), num) for m in methods]


def _check(targets: dict, human_rdm, methods) -> tuple[dict, np.ndarray, int]:
  bad = [m for m in methods if m not in compare_lib.RANK_METHODS]
  if bad:
    raise InputError(f"The joint engine scores the rank methods {compare_lib.RANK_METHODS}; "
                     f"got {bad}.")
  vectors = {k: checks.as_condensed(v, k) for k, v in targets.items()}
  human = checks.as_condensed(human_rdm, "human_rdm")
  for k, v in vectors.items():
    if v.shape != human.shape:
      raise InputError(f"RDM {k!r} has {v.size} pairs and the human RDM {human.size}; they must "
                       "cover the same images in the same order.")
  n = checks.num_images(human.size)
  if n > checks.MAX_IMAGES:
    raise InputError(f"{n} images: the joint engine handles up to {checks.MAX_IMAGES:,}.")
  return vectors, human, n


def check_annotators(counts, metric: str | None, n: int) -> np.ndarray:
  """Validated annotator counts [n, classes] behind a human RDM of n images, and its metric."""
  counts = annotators.check_counts(counts, min_annotators=1)
  if len(counts) != n:
    raise InputError(f"The annotator counts cover {len(counts)} images but the RDMs {n}; they "
                     "must describe the same images in the same order.")
  distances.check_metric(metric)
  return counts


def _permutation_crosses(target_c: list[np.ndarray], human_c: np.ndarray, n: int,
                         n_permutations: int, seed: int, label: str) -> np.ndarray:
  """[n_permutations, targets] sums of c_a c_b with the human ranks' images permuted (drawn as
  inference.permutation_test draws them)."""
  square = ssd.squareform(human_c, checks=False)
  rng = np.random.default_rng(seed)
  out = np.empty((n_permutations, len(target_c)))
  progress = Progress(f"{label}permutations of {len(target_c)} RDM(s)", n_permutations)
  for p in range(n_permutations):
    perm = rng.permutation(n)
    partial = []

    def work(r0, r1, start, perm=perm):
      permuted = rdm_lib.table_panel(square, perm, r0, r1).astype(np.float64)
      partial.append([float(np.dot(c[start:start + len(permuted)], permuted))
                      for c in target_c])

    _for_each_panel(n, work)
    out[p] = [math.fsum(column) for column in zip(*partial)]
    progress.update(p + 1)
  return out


def resample_jointly(targets: dict, human_rdm, methods, *, n_bootstrap: int,
                     n_permutations: int, seed: int, human_counts: np.ndarray | None = None,
                     metric: str | None = None, label: str = "") -> JointResult:
  """Scores of every target RDM against human_rdm on all images, on `n_bootstrap` resamples of
  images (with `human_counts` and its `metric`, also of each image's annotators) and on
  `n_permutations` permutations, all targets on the same draws (see the module)."""
  methods = tuple(methods)
  vectors, human, n = _check(targets, human_rdm, methods)
  if human_counts is not None:
    human_counts = check_annotators(human_counts, metric, n)
  label = f"{label}: " if label else ""
  num = len(human)
  unit = np.ones(num, np.uint16)
  human_order = sort_rdm(human)
  human_c = np.empty(num, np.int32)  # all-image ranks: the estimates and the permutations
  ties_b = weighted_ranks(human_order, unit, num, human_c)
  pairs, target_c, ties_a, estimates = {}, [], [], {}
  for k, v in vectors.items():  # one sort per target serves everything below
    order = sort_rdm(v)
    c = np.empty(num, np.int32)
    ties_a.append(weighted_ranks(order, unit, num, c))
    cross = math.fsum(float(np.dot(c[s:e], human_c[s:e].astype(np.float64)))
                      for s, e in _chunks(num))
    estimates[k] = dict(zip(methods, _scores(methods, cross, ties_a[-1], ties_b, num)))
    if n_permutations:
      target_c.append(c)
    if n_bootstrap:
      pairs[k] = sorted_pairs(order, n)
  del unit
  null, per_permutation = {k: np.empty((0, len(methods))) for k in vectors}, 0.0
  if n_permutations:
    start = time.perf_counter()
    crosses = _permutation_crosses(target_c, human_c, n, n_permutations, seed, label)
    del target_c
    null = {k: np.array([_scores(methods, x, ties_a[t], ties_b, num) for x in crosses[:, t]])
            for t, k in enumerate(vectors)}
    per_permutation = (time.perf_counter() - start) / n_permutations
  del human_c
  boot, per_resample = {k: np.empty((0, len(methods))) for k in vectors}, 0.0
  if n_bootstrap:
    start = time.perf_counter()
    side = (_FixedHuman(human_order) if human_counts is None else
            _RedrawnHuman(human_counts, metric, seed))
    boot = _bootstrap(pairs, side, n, methods, n_bootstrap, seed, label)
    per_resample = (time.perf_counter() - start) / n_bootstrap
  return JointResult(methods, estimates, boot, null, per_resample, per_permutation)


def _bootstrap(pairs: dict[str, SortedPairs], side, n, methods, n_bootstrap, seed,
               label) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  human_c = np.empty(n * (n - 1) // 2, np.int32)
  out = {k: np.empty((n_bootstrap, len(methods))) for k in pairs}
  progress = Progress(f"{label}bootstrap of {len(pairs)} RDM(s) ({', '.join(methods)})",
                      n_bootstrap)
  workers = min(len(pairs), os.cpu_count() or 1)
  sums_of = target_sums
  if not backend.rsa_on_host():  # accelerators: the same pass, jitted (rsa/xla.py)
    from align_jax.rsa import xla  # pylint: disable=g-import-not-at-top
    sums_of, workers = xla.joint_target_sums, 1
    pairs = {k: xla.on_device(p) for k, p in pairs.items()}  # copied to the device once
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for r in range(n_bootstrap):
      drawn, multiplicity = draw_images(n, rng)
      m = np.zeros(n, np.int64)
      m[drawn] = multiplicity
      num_weight = int((m.sum() ** 2 - (m * m).sum()) // 2)
      ties_b = side.ranks(drawn, m, num_weight, human_c)
      sums = pool.map(lambda k: sums_of(pairs[k], m, human_c, num_weight), list(pairs))
      for k, (cross, ties_a) in zip(pairs, sums):
        out[k][r] = _scores(methods, cross, ties_a, ties_b, num_weight)
      progress.update(r + 1)
  return out
