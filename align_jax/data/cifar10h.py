"""CIFAR-10H human soft labels (Peterson et al., ICCV 2019; CC BY-NC-SA 4.0).

`probs` [10000, 10] float64: share of annotators choosing each class; `counts` [10000, 10]
int64: the same as counts (47-63 annotators per image). Row i is CIFAR-10 test image i in the
official order. Read from `<data_dir>/cifar10h/` or downloaded once into a cache directory,
checked against the published files' SHA-256.
"""

import hashlib
import os
import urllib.request

import numpy as np

import align_jax
from align_jax.errors import InputError

NUM_IMAGES = 10_000
NUM_CLASSES = 10
SUBDIR = "cifar10h"
BASE_URL = "https://raw.githubusercontent.com/jcpeterson/cifar-10h/master/data/"
SHA256 = {
    "cifar10h-probs.npy": "436ae98620e00073f9d08585ac870573b588853e7af9f54eb1647408114af77d",
    "cifar10h-counts.npy": "9b36b4550349af56c79083356312eb4af856cc5fd3caf1f669d40b9d0bbb69ff",
}
# Published agreement of the human majority with the CIFAR-10 label is ~99%; a file in
# another order agrees on ~10%. Anything below this threshold is treated as mis-ordered.
MIN_MAJORITY_AGREEMENT = 0.95


def default_cache_dir() -> str:
  return os.path.join(align_jax.user_cache_dir(), SUBDIR)


def fetch_url(url: str) -> bytes:
  """Downloads `url`; replaced in tests by a function that serves local bytes."""
  with urllib.request.urlopen(url, timeout=60) as response:
    return response.read()


def _download(name: str, cache_dir: str, fetch) -> str:
  path = os.path.join(cache_dir, name)
  if os.path.isfile(path) and _sha256(path) == SHA256[name]:
    return path
  try:
    payload = fetch(BASE_URL + name)
  except OSError as e:
    raise InputError(
        f"Could not download CIFAR-10H {name} from {BASE_URL} ({e}). Offline? Put "
        f"{SUBDIR}/{name} into a data directory and set data_dir / ALIGN_JAX_DATA_DIR.") from e
  digest = hashlib.sha256(payload).hexdigest()
  if digest != SHA256[name]:
    raise InputError(f"Downloaded {name} has SHA-256 {digest}, expected {SHA256[name]}: "
                       "the file is corrupt or not the published CIFAR-10H release.")
  os.makedirs(cache_dir, exist_ok=True)
  tmp = path + ".partial"
  with open(tmp, "wb") as f:
    f.write(payload)
  os.replace(tmp, path)
  return path


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def validate(probs: np.ndarray, counts: np.ndarray, test_labels: np.ndarray | None,
             paths: dict[str, str] | None = None) -> None:
  """Raises InputError unless probs/counts are CIFAR-10H-shaped, consistent and in test order;
  messages name the files (`paths`: file name -> path) and what is expected."""
  paths = paths or {}
  where = {"probs": paths.get("cifar10h-probs.npy", "CIFAR-10H probs"),
           "counts": paths.get("cifar10h-counts.npy", "CIFAR-10H counts")}
  for name, array in (("probs", probs), ("counts", counts)):
    if array.shape != (NUM_IMAGES, NUM_CLASSES):
      raise InputError(f"{where[name]} has shape {array.shape}, expected "
                       f"({NUM_IMAGES}, {NUM_CLASSES}): one row per CIFAR-10 test image.")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
      raise InputError(f"{where[name]} has negative or non-finite (NaN/inf) entries.")
  if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-6):
    raise InputError(f"{where['probs']}: rows do not sum to 1 (they must be label "
                     "distributions).")
  totals = counts.sum(axis=1, keepdims=True)
  if np.any(totals == 0) or not np.allclose(counts / np.maximum(totals, 1), probs, atol=1e-6):
    raise InputError(f"{where['counts']} and {where['probs']} disagree (probs != counts / row "
                     "total): they are not the same release.")
  if test_labels is not None:
    agreement = float(np.mean(np.argmax(counts, axis=1) == test_labels))
    if agreement < MIN_MAJORITY_AGREEMENT:
      raise InputError(
          f"The majority label of {where['counts']} matches the CIFAR-10 test label on only "
          f"{agreement:.1%} of images (expected ~99%): the file is not in the official test "
          "order, or the test set is not in official order.")


def _load_array(path: str) -> np.ndarray:
  """np.load without pickles, with a clear error for anything that is not a plain .npy array."""
  try:
    return np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise InputError(f"{path} is not a plain numeric .npy array ({e}). Use the published "
                     "CIFAR-10H files (pickled or damaged files are refused).") from e


def load_cifar10h(data_dir: str = "", test_labels: np.ndarray | None = None, *,
                  cache_dir: str | None = None, fetch=fetch_url) -> tuple[np.ndarray, np.ndarray]:
  """Returns validated (probs float64, counts int64), both [10000, 10] in test order."""
  local = os.path.join(os.path.expanduser(data_dir), SUBDIR) if data_dir else ""
  paths = {}
  for name in SHA256:
    if local and os.path.isfile(os.path.join(local, name)):
      paths[name] = os.path.join(local, name)
    else:
      paths[name] = _download(name, cache_dir or default_cache_dir(), fetch)
  probs, counts = (_load_array(paths[name]) for name in ("cifar10h-probs.npy",
                                                         "cifar10h-counts.npy"))
  for name, array in (("cifar10h-probs.npy", probs), ("cifar10h-counts.npy", counts)):
    if not np.issubdtype(array.dtype, np.number):
      raise InputError(f"{paths[name]} holds {array.dtype} values, not numbers.")
  probs = probs.astype(np.float64)
  if counts.shape == (NUM_IMAGES, NUM_CLASSES) and not np.all(counts == np.round(counts)):
    raise InputError(f"{paths['cifar10h-counts.npy']} holds non-integer counts.")
  validate(probs, counts, test_labels, paths)
  return probs, counts.astype(np.int64)
