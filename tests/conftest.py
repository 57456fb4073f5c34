"""Shared fixtures: tiny fake CIFAR-10 archives, the offline data directory, tiny configs."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

# The tests compile the same small programs many times over (every fold, resumed run and
# entry-point subprocess builds its own train step): a compilation cache shared by this session
# and its subprocesses, set before JAX is imported, compiles each once. Emptied at exit.
_COMPILATION_CACHE = tempfile.mkdtemp(prefix="align_jax_tests_xla_cache_")
atexit.register(shutil.rmtree, _COMPILATION_CACHE, ignore_errors=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _COMPILATION_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
# align_jax's per-user cache (shared noise ceilings): a temporary one, never the user's own
_USER_CACHE = tempfile.mkdtemp(prefix="align_jax_tests_user_cache_")
atexit.register(shutil.rmtree, _USER_CACHE, ignore_errors=True)
os.environ["ALIGN_JAX_CACHE_DIR"] = _USER_CACHE

SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                           "data"))


RECORDS = 10_000  # records per official binary file


def write_fake_archive(root: str, per_file: int = RECORDS, test_size: int = RECORDS,
                       seed: int = 0):
  """Writes `root/cifar-10-batches-bin/` in the official layout with random images (full size
  by default: the loader accepts nothing else; smaller sizes are for tests that patch it).

  Returns (train images, train labels, test images, test labels) as written.
  """
  rng = np.random.default_rng(seed)
  folder = os.path.join(root, "cifar-10-batches-bin")
  os.makedirs(folder, exist_ok=True)
  written = {}
  for name, size in [(f"data_batch_{i}.bin", per_file) for i in range(1, 6)] + [
      ("test_batch.bin", test_size)]:
    images = rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size).astype(np.uint8)
    records = np.concatenate([labels[:, None], images.transpose(0, 3, 1, 2).reshape(size, -1)],
                             axis=1)
    records.tofile(os.path.join(folder, name))
    written[name] = (images, labels)
  train = [written[f"data_batch_{i}.bin"] for i in range(1, 6)]
  return (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]),
          *written["test_batch.bin"])


def write_fake_cifar10h(root: str, test_labels: np.ndarray, seed: int = 0) -> np.ndarray:
  """Writes `root/cifar10h/` counts and probs that agree with `test_labels` (10,000 images):
  about 50 annotators per image, most choosing the label, the rest a random class. Returns
  the counts."""
  rng = np.random.default_rng(seed)
  n = len(test_labels)
  counts = np.zeros((n, 10), np.int64)
  counts[np.arange(n), test_labels] = rng.integers(30, 50, n)
  np.add.at(counts, (np.repeat(np.arange(n), 5), rng.integers(0, 10, 5 * n)), 1)
  folder = os.path.join(root, "cifar10h")
  os.makedirs(folder, exist_ok=True)
  np.save(os.path.join(folder, "cifar10h-counts.npy"), counts)
  np.save(os.path.join(folder, "cifar10h-probs.npy"), counts / counts.sum(axis=1, keepdims=True))
  return counts


@pytest.fixture(scope="session")
def fake_archive(tmp_path_factory):
  """(root, arrays) of one full-size fake archive, written once per test session."""
  root = str(tmp_path_factory.mktemp("fake_archive"))
  return root, write_fake_archive(root)


def link_fake_archive(fake_archive, root: str) -> np.ndarray:
  """Gives `root` the session's fake archive (symlinked files); returns its test labels."""
  source, arrays = fake_archive
  folder = os.path.join(root, "cifar-10-batches-bin")
  os.makedirs(folder, exist_ok=True)
  for name in os.listdir(os.path.join(source, "cifar-10-batches-bin")):
    os.symlink(os.path.join(source, "cifar-10-batches-bin", name), os.path.join(folder, name))
  return arrays[3]


@pytest.fixture
def fake_study_data_dir(tmp_path, fake_archive):
  """The fake archive with a fake CIFAR-10H that agrees with its test labels."""
  write_fake_cifar10h(str(tmp_path), link_fake_archive(fake_archive, str(tmp_path)))
  return str(tmp_path)


@pytest.fixture
def fake_data_dir(tmp_path, fake_archive):
  link_fake_archive(fake_archive, str(tmp_path))
  return str(tmp_path)


@pytest.fixture(scope="session")
def offline_data_dir(tmp_path_factory):
  """The offline data directory, built once from ../shared/data; skips when that is absent."""
  builder = os.path.join(SHARED_DATA, "build_cifar10_binary.py")
  if not os.path.isfile(builder):
    pytest.skip(f"offline data not available: {builder} is missing (elsewhere, "
                "point ALIGN_JAX_DATA_DIR at a data directory instead)")
  out = str(tmp_path_factory.mktemp("align_jax_data"))
  subprocess.run([sys.executable, builder, out], check=True, capture_output=True)
  return out


@pytest.fixture
def tiny_philnet_config(fake_data_dir):
  """PhilNet on 240 images of the fake archive: 2 epochs of 4 steps, evaluated on 60 images."""
  return tiny_philnet(fake_data_dir)


def tiny_philnet(data_dir: str):
  """The tiny PhilNet config (see tiny_philnet_config) on `data_dir`."""
  from experiments.configs import philnet  # pylint: disable=g-import-not-at-top
  config = philnet.get_config("smoke")
  config.data_dir = data_dir
  config.num_validation = 60
  config.train_subset = 240
  config.test_subset = 60
  config.batch_size = 60
  config.eval_batch_size = 60
  config.num_epochs = 2
  config.log_every_steps = 2
  return config
