"""Reuse of an alignment run's expensive parts across reruns, keyed by what determines them and
verified whenever they are read back.

A key is the sha256 of a JSON description holding everything a result depends on (the
align_jax version included) and content hashes of the arrays it is computed from, so a rerun
with the same inputs reuses, and any change recomputes. A `Cache` is one folder of entries:
arrays as `.npz`, other statistics as `.json`. Each entry records its key, the align_jax
version that wrote it and checksums of its content; an entry that cannot be read or fails any
of these checks is logged as a warning naming the file, set aside as `<file>.damaged`, and
recomputed. Writes go to a temporary file of the writing process and are renamed into place,
so concurrent runs sharing a folder (the per-user cache of `shared_cache`) never see half an
entry; two runs missing the same entry at once both compute it and the last rename wins.

A run's cache is `<workdir>/cache/`; the noise ceiling, which depends only on the human data,
the images and the ceiling's settings, lives in the per-user cache so that every output folder
reuses it. RDMs are not stored twice: the previous run's published `rdms/<name>.npy` is reused
when its sidecar carries the same key and the file's sha256 still matches (`reuse_rdm`).
"""

import hashlib
import io
import json
import os
import uuid
import zipfile

import numpy as np
from absl import logging

import align_jax
from align_jax.pipeline import outputs

CACHE_DIR = "cache"
SHARED_SUBDIR = "alignment"  # the per-user cache's folder for alignment entries
_RECORD = "__entry__"  # the .npz member holding an array entry's record


class DamagedEntry(Exception):
  """A stored entry that must not be used (unreadable, or failing a check)."""


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


def _json_checksum(value) -> str:
  """sha256 of a JSON value's canonical text (stable across a write and a read back)."""
  text = json.dumps(value, sort_keys=True, allow_nan=True)
  return hashlib.sha256(text.encode()).hexdigest()


def _record(cache_key: str, checksum) -> dict:
  return {"key": cache_key, "align_jax": align_jax.__version__, "checksum": checksum}


def _check_record(record, cache_key: str, checksum) -> None:
  """Raises DamagedEntry unless `record` is this version's entry of `cache_key` with this
  content checksum."""
  if not isinstance(record, dict):
    raise DamagedEntry("no entry record")
  if record.get("align_jax") != align_jax.__version__:
    raise DamagedEntry(f"written by align_jax {record.get('align_jax')}, this is "
                       f"{align_jax.__version__}")
  if record.get("key") != cache_key:
    raise DamagedEntry("its key does not match its file name")
  if record.get("checksum") != checksum:
    raise DamagedEntry("its content does not match its checksum")


def shared_cache(cache_dir: str) -> "Cache | None":
  """The per-user cache's alignment folder under `cache_dir` ('' = no shared cache)."""
  if not cache_dir:
    return None
  return Cache(os.path.join(os.path.expanduser(cache_dir), SHARED_SUBDIR))


class Cache:
  """get-or-compute over one folder of verified entries (see module)."""

  def __init__(self, folder: str):
    self.folder = folder

  @classmethod
  def of_workdir(cls, workdir: str) -> "Cache":
    return cls(os.path.join(workdir, CACHE_DIR))

  def _path(self, name: str) -> str:
    return os.path.join(self.folder, name)

  def json(self, cache_key: str, compute, what: str = ""):
    """compute()'s JSON-able result, stored under the key; `what` names it in the log when
    it is reused."""
    path = self._path(f"{cache_key}.json")
    if os.path.isfile(path):
      try:
        with open(path) as f:
          entry = json.load(f)
        value = entry["value"] if isinstance(entry, dict) and "value" in entry else None
        _check_record(entry.get("record") if isinstance(entry, dict) else None, cache_key,
                      _json_checksum(value))
      except (OSError, ValueError, DamagedEntry) as e:
        _set_aside(path, e)
      else:
        if what:
          logging.info("%s: reused from %s.", what, path)
        return value
    value = compute()
    text = json.dumps({"record": _record(cache_key, _json_checksum(value)), "value": value},
                      indent=1, allow_nan=True)
    self._write(path, lambda f: f.write(text.encode()))
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
        try:
          found[cache_key] = _read_arrays(path, cache_key)
          continue
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, DamagedEntry) as e:
          _set_aside(path, e)
      missing.append(cache_key)
    if missing:
      computed = compute_missing(missing)
      for cache_key in missing:
        arrays = computed[cache_key]
        record = _record(cache_key, {n: digest(a) for n, a in arrays.items()})
        members = dict(arrays, **{_RECORD: np.frombuffer(json.dumps(record).encode(), np.uint8)})
        self._write(self._path(f"{cache_key}.npz"), lambda f, m=members: np.savez(f, **m))
        found[cache_key] = arrays
    return found

  def _write(self, path: str, write) -> None:
    """write(file) into a temporary file of this process, renamed to `path`; a cache that
    cannot be written is a warning, not a failure (the result in hand is still right)."""
    tmp = f"{path}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
      os.makedirs(self.folder, exist_ok=True)
      with open(tmp, "wb") as f:
        write(f)
      os.replace(tmp, path)
    except OSError as e:
      logging.warning("Could not store %s (%s); it will be computed again next time.", path, e)
      if os.path.exists(tmp):
        os.remove(tmp)


def _read_arrays(path: str, cache_key: str) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as stored:
    arrays = {name: stored[name] for name in stored.files}
  record = json.loads(arrays.pop(_RECORD).tobytes()) if _RECORD in arrays else None
  _check_record(record, cache_key, {n: digest(a) for n, a in arrays.items()})
  return arrays


def _set_aside(path: str, reason: Exception) -> None:
  """Logs why the entry at `path` is not used and moves it to `<path>.damaged` (kept for a
  look; the next write replaces the entry)."""
  aside = path + ".damaged"
  try:
    os.replace(path, aside)
    where = f"moved to {aside}"
  except OSError:  # gone already (another process), or a folder this user cannot change
    where = "left in place"
  logging.warning("Cache entry %s cannot be used (%s): %s; recomputing it.", path,
                  str(reason) or type(reason).__name__, where)


def reuse_rdm(previous_workdir: str, name: str, rdm_key: str) -> np.ndarray | None:
  """The previous run's published RDM `name` if its sidecar has `rdm_key` and the file's sha256
  still matches the one its sidecar recorded at creation; None (recompute) otherwise, with a
  warning when the file was there but changed or unreadable. The caller writes the array it
  gets into the new run's outputs afresh, so two runs never share one file."""
  sidecar = os.path.join(previous_workdir, outputs.RDM_DIR, f"{name}.json")
  source = os.path.join(previous_workdir, outputs.RDM_DIR, f"{name}.npy")
  if not (os.path.isfile(sidecar) and os.path.isfile(source)):
    return None
  try:
    with open(sidecar) as f:
      recorded = json.load(f)
    if recorded.get("key") != rdm_key:
      return None
    with open(source, "rb") as f:
      content = f.read()
    if hashlib.sha256(content).hexdigest() != recorded.get("sha256"):
      raise DamagedEntry("the file changed since it was written (its sha256 differs from "
                         "its sidecar's)" if "sha256" in recorded else "its sidecar has no sha256")
    return np.load(io.BytesIO(content), allow_pickle=False)
  except (OSError, ValueError, AttributeError, DamagedEntry) as e:
    logging.warning("RDM %s is not reused (%s); recomputing it.", source, e)
    return None
