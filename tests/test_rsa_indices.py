"""The accelerator RSA kernels' index arithmetic up to the largest RDM the checks accept.

An int32 product that wraps gives a silently wrong RDM on a GPU, so the panel starts and the
rank arithmetic are checked against exact Python/int64 values at n = 50,000 and at the limit,
and one real panel at n = 50,000 against scipy (no full RDM is built).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.spatial.distance as ssd

from align_jax.rsa import checks, distances, xla


@pytest.mark.parametrize("n", [50_000, checks.MAX_IMAGES])
def test_every_panel_start_is_exact(n):
  r0 = np.arange(n - 1, dtype=np.int64)
  expected = r0 * n - r0 * (r0 + 1) // 2  # exact in int64
  assert expected[-1] + 1 == n * (n - 1) // 2  # the last pair's index is N - 1
  got = np.asarray(jax.jit(xla.panel_start, static_argnums=1)(jnp.arange(n - 1, dtype=jnp.int32),
                                                               n))
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got.astype(np.int64), expected)


def test_the_direct_int32_formula_would_wrap_at_fifty_thousand():
  """Why the test above matters: the former formula is wrong from n = 46,342 on."""
  n, r0 = 50_000, jnp.int32(49_000)  # r0 * (r0 + 1) passes 2^31 before it is halved
  direct = int(r0 * n - r0 * (r0 + 1) // 2)
  assert direct != 49_000 * 50_000 - 49_000 * 49_001 // 2
  assert int(xla.panel_start(r0, n)) == 49_000 * 50_000 - 49_000 * 49_001 // 2


@pytest.mark.parametrize("n", [50_000, checks.MAX_IMAGES])
def test_centred_ranks_do_not_overflow_at_the_limit(n):
  num = n * (n - 1) // 2
  assert num < 2 ** 31  # every condensed index and position fits in int32
  start = np.array([0, 0, num // 2, num - 1, num - 7], np.int64)
  end = np.array([num, 1, num // 2 + 3, num, num], np.int64)
  got = jax.jit(xla.centred_rank, static_argnums=2)(jnp.asarray(start, jnp.int32),
                                                     jnp.asarray(end, jnp.int32), num)
  np.testing.assert_array_equal(np.asarray(got).astype(np.int64), start + end - num)


def test_the_last_panel_at_fifty_thousand_images_matches_scipy():
  n, d, block = 50_000, 3, 4
  y = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
  emb = distances.embed(y, "euclidean")
  r0 = n - 1 - block + 1  # rows n-4..n-1: the panel whose start the former formula wrapped
  pairs = jax.jit(xla.panel_pairs, static_argnames=("metric", "dims", "block"))(
      jnp.asarray(emb.y), jnp.asarray(np.pad(emb.y, ((0, block), (0, 0)))),
      None if emb.sq is None else jnp.asarray(emb.sq),
      None if emb.sq is None else jnp.asarray(np.pad(emb.sq, (0, block))),
      jnp.int32(r0), metric=emb.metric, dims=emb.dims, block=block)
  tail = y[r0:].astype(np.float64)
  expected = ssd.pdist(tail, "euclidean")  # pairs among the last rows, in condensed order
  real = block * (block - 1) // 2
  np.testing.assert_allclose(np.asarray(pairs)[:real], expected, rtol=1e-4, atol=1e-4)
  assert int(xla.panel_start(r0, n)) == n * (n - 1) // 2 - real
