"""Linear centred kernel alignment (Kornblith et al., ICML 2019): a non-RDM alignment score."""

import jax
import jax.numpy as jnp
from jax import lax

from align_jax.errors import InputError
from align_jax.rsa import checks


@jax.jit
def _linear_cka(x, y):
  dot = lambda u, v: jnp.dot(u.T, v, precision=lax.Precision.HIGHEST)
  x = x - x.mean(axis=0)
  y = y - y.mean(axis=0)
  cross = jnp.sum(dot(y, x) ** 2)
  return cross / (jnp.linalg.norm(dot(x, x)) * jnp.linalg.norm(dot(y, y)))


def linear_cka(x, y) -> float:
  """||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F) for column-centred x [n, p], y [n, q]; in [0, 1]."""
  x, y = checks.as_features(x, "x"), checks.as_features(y, "y")
  if x.shape[0] != y.shape[0]:
    raise InputError(f"x has {x.shape[0]} rows and y {y.shape[0]}; rows must be the same images.")
  if min(x.std(axis=0).max(), y.std(axis=0).max()) == 0:
    raise InputError("linear_cka is undefined when every column of x or y is constant.")
  return float(_linear_cka(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)))
