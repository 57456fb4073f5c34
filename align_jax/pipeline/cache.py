"""Reuse of an alignment run's expensive parts across reruns, keyed by what determines them.

A key is the sha256 of a JSON description holding everything a result depends on (the
align_jax version included) and content hashes of the arrays it is computed from, so a rerun
with the same inputs reuses, and any change recomputes. Stored in `<workdir>/cache/`:
features and each target's resampled scores (`.npz`), other statistics (`.json`). RDMs are not
stored twice: the previous run's published `rdms/<name>.npy` is reused when its sidecar
carries the same key.
"""

import hashlib
import json
import os

import numpy as np

import align_jax
from align_jax.pipeline import outputs

CACHE_DIR = "cache"


def digest(array: np.ndarray) -> str:
  """Content hash of an array (dtype, shape and bytes)."""
  array = np.ascontiguousarray(array)
  h = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
  h.update(array.tobytes())
  return h.hexdigest()


def key(**parts) -> str:
  """The cache key of a result described by `parts` (JSON-able; arrays as digests)."""
  text = json.dumps(dict(parts, version=align_jax.__version__), sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:32]


class Cache:
  """get-or-compute for one workdir's cache/ folder (writes are atomic)."""

  def __init__(self, workdir: str):
    self.folder = os.path.join(workdir, CACHE_DIR)

  def _path(self, name: str) -> str:
    return os.path.join(self.folder, name)

  def json(self, cache_key: str, compute):
    """compute()'s JSON-able result, stored under the key."""
    path = self._path(f"{cache_key}.json")
    if os.path.isfile(path):
      with open(path) as f:
        return json.load(f)
    value = compute()
    outputs.atomic_write_json(path, value)
    return value

  def arrays(self, cache_key: str, compute) -> dict[str, np.ndarray]:
    """compute()'s {name: array} result, stored as an .npz under the key."""
    return self.arrays_of([cache_key], lambda missing: {cache_key: compute()})[cache_key]

  def arrays_of(self, cache_keys: list[str], compute_missing) -> dict[str, dict[str, np.ndarray]]:
    """arrays() of several keys, the ones not stored computed together by
    compute_missing(missing keys) -> {key: {name: array}}."""
    found, missing = {}, []
    for cache_key in cache_keys:
      path = self._path(f"{cache_key}.npz")
      if os.path.isfile(path):
        with np.load(path, allow_pickle=False) as stored:
          found[cache_key] = {name: stored[name] for name in stored.files}
      else:
        missing.append(cache_key)
    if missing:
      computed = compute_missing(missing)
      os.makedirs(self.folder, exist_ok=True)
      for cache_key in missing:
        path = self._path(f"{cache_key}.npz")
        with open(path + ".tmp", "wb") as f:
          np.savez(f, **computed[cache_key])
        os.replace(path + ".tmp", path)
        found[cache_key] = computed[cache_key]
    return found


def reuse_rdm(previous_workdir: str, stage: str, name: str, rdm_key: str) -> np.ndarray | None:
  """The previous run's published RDM `name` if its sidecar has `rdm_key`, linked into the
  staging folder (no copy); None otherwise."""
  sidecar = os.path.join(previous_workdir, outputs.RDM_DIR, f"{name}.json")
  source = os.path.join(previous_workdir, outputs.RDM_DIR, f"{name}.npy")
  if not (os.path.isfile(sidecar) and os.path.isfile(source)):
    return None
  with open(sidecar) as f:
    if json.load(f).get("key") != rdm_key:
      return None
  target = os.path.join(stage, outputs.RDM_DIR, f"{name}.npy")
  os.makedirs(os.path.dirname(target), exist_ok=True)
  try:
    os.link(source, target)
  except OSError:  # another filesystem: fall back to reading it
    return np.load(source, allow_pickle=False)
  return np.load(target, allow_pickle=False)
