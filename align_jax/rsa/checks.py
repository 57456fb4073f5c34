"""Input validation and small shared helpers of the RSA engine (arrays in, numbers out)."""

import numpy as np

from align_jax.errors import InputError

# Centred ranks are int32, pair indices uint32 (the joint engine's below 2^31) and image ids
# uint16: all hold for n <= 65,536 images.
MAX_IMAGES = 1 << 16


def as_features(features, name: str = "features") -> np.ndarray:
  """[n, d] finite float array with 2 <= n <= MAX_IMAGES, as float64 numpy."""
  x = np.asarray(features)
  if x.ndim != 2:
    raise InputError(f"{name} must be 2-D [n_images, n_dims]; got shape {x.shape}.")
  if not 2 <= x.shape[0] <= MAX_IMAGES:
    raise InputError(f"{name} has {x.shape[0]} rows; RSA needs 2..{MAX_IMAGES} images.")
  if x.shape[1] == 0:
    raise InputError(f"{name} has no feature dimensions.")
  x = x.astype(np.float64)
  if not np.all(np.isfinite(x)):
    bad = np.flatnonzero(~np.all(np.isfinite(x), axis=1))[:5]
    raise InputError(f"{name} has NaN or inf values (rows {bad.tolist()}...); clean them first.")
  return x


def as_condensed(rdm, name: str = "rdm") -> np.ndarray:
  """A finite 1-D condensed RDM with at least 3 entries, as a numpy array (dtype kept)."""
  v = np.asarray(rdm)
  if v.ndim != 1:
    raise InputError(f"{name} must be a condensed 1-D RDM (scipy pdist order); got shape "
                     f"{v.shape}. Use rdm_from_square() for square matrices.")
  if v.size < 3:
    raise InputError(f"{name} has {v.size} pairs; comparing RDMs needs at least 3.")
  if not np.all(np.isfinite(v)):
    raise InputError(f"{name} holds NaN or inf distances ({int(np.sum(~np.isfinite(v)))} of "
                     f"{v.size}); rank correlations are undefined for them.")
  return v


def num_images(num_pairs: int) -> int:
  """n such that n (n - 1) / 2 == num_pairs, or InputError."""
  n = int(round((1 + np.sqrt(1 + 8 * num_pairs)) / 2))
  if n * (n - 1) // 2 != num_pairs:
    raise InputError(f"{num_pairs} is not n(n-1)/2 for any n: not a condensed RDM.")
  return n


def condensed_index(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
  """Position of pair (i, j), i < j, in scipy's condensed order (int64 arrays)."""
  i = i.astype(np.int64)
  return i * n - i * (i + 1) // 2 + j.astype(np.int64) - i - 1


def row_starts(n: int) -> np.ndarray:
  """Condensed offset of each row's first pair (i, i + 1); int64 [n]."""
  i = np.arange(n, dtype=np.int64)
  return i * n - i * (i + 1) // 2
