"""CIFAR-10 as uint8 arrays, from an official binary directory or from tensorflow-datasets.

Both sources yield identical arrays in the official order: the test split in the order of
`test_batch.bin`, which is the order CIFAR-10H rows follow. tfds stores its test split
shuffled with ids `test_%05d`, so it is sorted by id (and the ids are checked).
"""

import dataclasses
import glob
import os
import socket

import numpy as np

from align_jax.errors import InputError

RECORD_BYTES = 1 + 32 * 32 * 3
RECORDS_PER_FILE = 10_000  # every official binary file, training and test alike
SPLIT_SIZES = {"train": 50_000, "test": 10_000}
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
BINARY_SUBDIR = "cifar-10-batches-bin"
DOWNLOAD_HOST = ("www.cs.toronto.edu", 443)  # where tensorflow-datasets fetches CIFAR-10
REACH_TIMEOUT_S = 3.0
NUM_CLASSES = 10
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")


@dataclasses.dataclass(frozen=True)
class Cifar10:
  """images: [n, 32, 32, 3] uint8 (HWC); labels: [n] int32 in 0..9."""
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray


def read_binary_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Parses one official binary file: records of 1 label byte + 3072 CHW pixel bytes."""
  if not os.path.isfile(path):
    raise InputError(
        f"CIFAR-10 file missing: {path}. The data directory must hold "
        f"{BINARY_SUBDIR}/{{{','.join(TRAIN_FILES)},{TEST_FILE}}} as unpacked from "
        "cifar-10-binary.tar.gz (or set data_dir='' to use tensorflow-datasets).")
  raw = np.fromfile(path, dtype=np.uint8)
  if raw.size != RECORDS_PER_FILE * RECORD_BYTES:
    whole = "" if raw.size % RECORD_BYTES else f" ({raw.size // RECORD_BYTES:,} records)"
    raise InputError(
        f"Malformed CIFAR-10 file {path}: {raw.size:,} bytes{whole}, expected exactly "
        f"{RECORDS_PER_FILE:,} records of {RECORD_BYTES} bytes ({RECORDS_PER_FILE * RECORD_BYTES:,}"
        " bytes): the file is truncated or not an official one. Re-extract it from "
        "cifar-10-binary.tar.gz.")
  records = raw.reshape(-1, RECORD_BYTES)
  labels = records[:, 0].astype(np.int32)
  if labels.max() >= NUM_CLASSES:
    raise InputError(f"Malformed CIFAR-10 file {path}: label byte {labels.max()} is not in 0..9.")
  images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels


def load_binary(data_dir: str) -> Cifar10:
  """Reads `<data_dir>/cifar-10-batches-bin/` (official binary layout)."""
  folder = os.path.join(os.path.expanduser(data_dir), BINARY_SUBDIR)
  if not os.path.isdir(folder):
    raise InputError(
        f"No {BINARY_SUBDIR}/ folder in data_dir={data_dir!r}. Unpack cifar-10-binary.tar.gz "
        "there, or build an offline directory with build_cifar10_binary.py (docs/data.md).")
  train = [read_binary_batch(os.path.join(folder, name)) for name in TRAIN_FILES]
  test_images, test_labels = read_binary_batch(os.path.join(folder, TEST_FILE))
  return Cifar10(
      train_images=np.concatenate([images for images, _ in train]),
      train_labels=np.concatenate([labels for _, labels in train]),
      test_images=test_images, test_labels=test_labels)


def sort_by_id(examples: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Restores the official order of a tfds split from its `<split>_%05d` ids; checks them."""
  ids = np.asarray([i.decode() if isinstance(i, bytes) else str(i) for i in examples["id"]])
  order = np.argsort(ids, kind="stable")
  expected = np.asarray([f"{split}_{i:05d}" for i in range(len(ids))])
  if not np.array_equal(ids[order], expected):
    raise InputError(
        f"tfds cifar10 '{split}' ids are not {split}_00000..{split}_{len(ids) - 1:05d}; cannot "
        "restore the official order that CIFAR-10H follows.")
  return (np.asarray(examples["image"])[order].astype(np.uint8),
          np.asarray(examples["label"])[order].astype(np.int32))


def _tfds_prepared(tfds_data_dir: str | None) -> bool:
  """Whether tfds' cifar10 is already prepared on disk (so no download is needed)."""
  root = os.path.expanduser(tfds_data_dir or os.environ.get("TFDS_DATA_DIR")
                            or "~/tensorflow_datasets")
  return bool(glob.glob(os.path.join(root, "cifar10", "*", "dataset_info.json")))


def _check_download_host() -> None:
  """Fails within seconds, before tfds creates any folder, when CIFAR-10's host is out of
  reach (tfds itself retries for minutes)."""
  try:
    socket.create_connection(DOWNLOAD_HOST, timeout=REACH_TIMEOUT_S).close()
  except OSError as e:
    raise InputError(
        f"tensorflow-datasets would download CIFAR-10 from {DOWNLOAD_HOST[0]}, which this "
        f"machine cannot reach ({e}). Offline? Point data_dir or ALIGN_JAX_DATA_DIR at a "
        "directory in the official binary layout (docs/data.md).") from e


def load_tfds(tfds_data_dir: str | None = None) -> Cifar10:
  """Loads tfds `cifar10` (downloads once) and sorts both splits into the official order."""
  if not _tfds_prepared(tfds_data_dir):
    _check_download_host()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from align_jax.data import tf_cpu  # pylint: disable=g-import-not-at-top
  tf_cpu.hide_gpus_from_tensorflow()
  splits = {}
  for split in ("train", "test"):
    try:
      dataset = tfds.load("cifar10", split=split, data_dir=tfds_data_dir).batch(10_000)
      batches = list(tfds.as_numpy(dataset))
    except Exception as e:  # pylint: disable=broad-except  (download/prepare failures vary)
      raise InputError(
          f"tensorflow-datasets could not provide cifar10 ({type(e).__name__}: {e}). Offline? "
          "Point data_dir or ALIGN_JAX_DATA_DIR at a directory in the official binary layout "
          "(docs/data.md).") from e
    examples = {k: np.concatenate([b[k] for b in batches]) for k in ("id", "image", "label")}
    if len(examples["label"]) != SPLIT_SIZES[split]:
      raise InputError(f"tensorflow-datasets cifar10 '{split}' has {len(examples['label']):,} "
                       f"examples, expected {SPLIT_SIZES[split]:,}: its prepared files are "
                       "incomplete. Delete its folder under ~/tensorflow_datasets/cifar10 and "
                       "retry, or use a data directory.")
    splits[split] = sort_by_id(examples, split)
  return Cifar10(*splits["train"], *splits["test"])


def load_cifar10(data_dir: str) -> Cifar10:
  """A binary directory when `data_dir` is set, else tensorflow-datasets."""
  return load_binary(data_dir) if data_dir else load_tfds()
