"""CIFAR-10 readers (binary + tfds order), CIFAR-10H validation and download, input pipeline."""

import os
import time

import numpy as np
import pytest

from align_jax.data import cifar10, cifar10h, input_pipeline
from align_jax.errors import InputError
from tests.conftest import SHARED_DATA, write_fake_archive


@pytest.fixture
def seven_record_files(monkeypatch):
  """Small in-process archives: every file holds 7 records instead of the official 10,000."""
  monkeypatch.setattr(cifar10, "RECORDS_PER_FILE", 7)
  monkeypatch.setattr(cifar10, "SPLIT_SIZES", {"train": 35, "test": 7})


def test_binary_reader_returns_written_images_in_order(tmp_path, seven_record_files):
  train_x, train_y, test_x, test_y = write_fake_archive(str(tmp_path), per_file=7, test_size=7)
  data = cifar10.load_binary(str(tmp_path))
  np.testing.assert_array_equal(data.train_images, train_x)
  np.testing.assert_array_equal(data.train_labels, train_y)
  np.testing.assert_array_equal(data.test_images, test_x)
  np.testing.assert_array_equal(data.test_labels, test_y)
  assert data.train_images.shape == (35, 32, 32, 3) and data.train_images.dtype == np.uint8


def test_files_short_by_whole_records_are_refused(fake_archive, tmp_path):
  """A test_batch.bin cut at a record boundary (9,000 records) or a 5,000-record training file
  must not load: every official file holds exactly 10,000 records."""
  source, _ = fake_archive
  folder = tmp_path / "cifar-10-batches-bin"
  folder.mkdir()
  for name in cifar10.TRAIN_FILES + (cifar10.TEST_FILE,):
    (folder / name).symlink_to(os.path.join(source, "cifar-10-batches-bin", name))
  for name, records in ((cifar10.TEST_FILE, 9_000), ("data_batch_1.bin", 5_000)):
    original = os.path.join(source, "cifar-10-batches-bin", name)
    (folder / name).unlink()
    with open(original, "rb") as f:
      (folder / name).write_bytes(f.read(records * cifar10.RECORD_BYTES))
    with pytest.raises(InputError, match=rf"{name}: .*\({records:,} records\), expected exactly "
                                         r"10,000 records"):
      cifar10.load_binary(str(tmp_path))
    (folder / name).unlink()
    (folder / name).symlink_to(original)


def test_binary_reader_decodes_channel_planes(tmp_path, monkeypatch):
  monkeypatch.setattr(cifar10, "RECORDS_PER_FILE", 1)
  folder = tmp_path / "cifar-10-batches-bin"
  folder.mkdir()
  record = np.zeros(3073, np.uint8)
  record[0] = 7
  record[1 + 0 * 1024 + 5 * 32 + 9] = 200  # red plane, row 5, column 9
  record[1 + 2 * 1024 + 31] = 99  # blue plane, row 0, column 31
  for name in cifar10.TRAIN_FILES + (cifar10.TEST_FILE,):
    record.tofile(folder / name)
  image, label = cifar10.read_binary_batch(str(folder / cifar10.TEST_FILE))
  assert label.tolist() == [7]
  assert image[0, 5, 9, 0] == 200 and image[0, 0, 31, 2] == 99 and image.sum() == 299


def test_binary_reader_names_missing_and_malformed_files(tmp_path, seven_record_files):
  write_fake_archive(str(tmp_path), per_file=7, test_size=7)
  batch = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
  with open(batch, "ab") as f:
    f.write(b"xx")
  with pytest.raises(InputError, match="data_batch_3.bin.*expected exactly 7 records"):
    cifar10.load_binary(str(tmp_path))
  os.remove(batch)
  with pytest.raises(InputError, match="missing.*data_batch_3.bin"):
    cifar10.load_binary(str(tmp_path))
  with pytest.raises(InputError, match="No cifar-10-batches-bin"):
    cifar10.load_binary(str(tmp_path / "nowhere"))


def _tfds_examples(images, labels, split, seed):
  """The split as tfds stores it: shuffled, with `<split>_%05d` ids."""
  order = np.random.default_rng(seed).permutation(len(labels))
  ids = np.array([f"{split}_{i:05d}".encode() for i in order])
  return {"id": ids, "image": images[order], "label": labels[order].astype(np.int64)}


def test_offline_tfds_fails_within_seconds_and_writes_nothing(tmp_path, monkeypatch):
  """Without a data directory and without network, the message comes at once (tfds itself
  retries for minutes) and tfds' folder is never created."""
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  monkeypatch.setattr(cifar10, "DOWNLOAD_HOST", ("127.0.0.1", 9))  # nothing listens there
  start = time.perf_counter()
  with pytest.raises(InputError, match="cannot reach.*ALIGN_JAX_DATA_DIR"):
    cifar10.load_cifar10("")
  assert time.perf_counter() - start < 10
  assert not os.path.exists(tmp_path / "tfds")


@pytest.mark.slow  # imports TensorFlow (~20 s)
def test_tfds_and_binary_sources_give_identical_arrays(tmp_path, seven_record_files,
                                                       monkeypatch):
  """tfds (mocked offline, shuffled like the real test split) sorts back to the binary order;
  a split with fewer examples than the official size is refused."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(cifar10, "_check_download_host", lambda: None)  # the mock downloads
  train_x, train_y, test_x, test_y = write_fake_archive(str(tmp_path), per_file=7, test_size=7)
  splits = {"train": _tfds_examples(train_x, train_y, "train", 1),
            "test": _tfds_examples(test_x, test_y, "test", 2)}

  def as_dataset(self, split, **kwargs):
    del self, kwargs
    return tf.data.Dataset.from_tensor_slices(splits[str(split)])

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    from_tfds = cifar10.load_tfds()
  from_binary = cifar10.load_binary(str(tmp_path))
  for field in ("train_images", "train_labels", "test_images", "test_labels"):
    np.testing.assert_array_equal(getattr(from_tfds, field), getattr(from_binary, field))
  splits["test"] = _tfds_examples(test_x[:6], test_y[:6], "test", 2)
  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    with pytest.raises(InputError, match="'test' has 6 examples, expected 7"):
      cifar10.load_tfds()


def test_tfds_ids_with_gaps_are_rejected():
  examples = {"id": np.array([b"test_00000", b"test_00002"]), "image": np.zeros((2, 32, 32, 3)),
              "label": np.zeros(2)}
  with pytest.raises(InputError, match="official order"):
    cifar10.sort_by_id(examples, "test")


def _cifar10h_files():
  folder = os.path.join(SHARED_DATA, "cifar10h")
  if not os.path.isdir(folder):
    pytest.skip(f"offline CIFAR-10H not available at {folder}")
  return folder


def test_cifar10h_loads_and_agrees_with_test_labels(offline_data_dir):
  data = cifar10.load_binary(offline_data_dir)
  probs, counts = cifar10h.load_cifar10h(offline_data_dir, data.test_labels)
  assert probs.shape == counts.shape == (10000, 10)
  assert counts.sum() == 511_000
  assert np.mean(np.argmax(counts, 1) == data.test_labels) > 0.98


def test_cifar10h_in_the_wrong_order_is_rejected(offline_data_dir):
  data = cifar10.load_binary(offline_data_dir)
  probs, counts = cifar10h.load_cifar10h(offline_data_dir)
  shuffle = np.random.default_rng(0).permutation(10000)
  with pytest.raises(InputError, match="not in the official test order"):
    cifar10h.validate(probs[shuffle], counts[shuffle], data.test_labels)
  with pytest.raises(InputError, match="disagree"):
    cifar10h.validate(probs, counts[shuffle], None)
  with pytest.raises(InputError, match="shape"):
    cifar10h.validate(probs[:10], counts[:10], None)


def test_bad_cifar10h_files_are_refused_with_their_names(tmp_path):
  folder = _cifar10h_files()
  local = tmp_path / "cifar10h"
  local.mkdir()
  probs = np.load(os.path.join(folder, "cifar10h-probs.npy"))
  np.save(local / "cifar10h-counts.npy", np.load(os.path.join(folder, "cifar10h-counts.npy")))
  probs_path = str(local / "cifar10h-probs.npy")
  np.save(probs_path, np.array([{"not": "numbers"}], dtype=object))  # a pickled object array
  with pytest.raises(InputError, match=r"cifar10h-probs.npy is not a plain numeric .npy"):
    cifar10h.load_cifar10h(str(tmp_path))
  broken = probs.copy()
  broken[3, 2] = np.nan
  np.save(probs_path, broken)
  with pytest.raises(InputError, match=r"cifar10h-probs.npy has negative or non-finite"):
    cifar10h.load_cifar10h(str(tmp_path))
  np.save(probs_path, probs[:5])
  with pytest.raises(InputError, match=r"cifar10h-probs.npy has shape \(5, 10\), expected"):
    cifar10h.load_cifar10h(str(tmp_path))


def test_cifar10h_download_checks_checksums(tmp_path):
  folder = _cifar10h_files()
  served = []

  def fetch(url):
    served.append(url)
    with open(os.path.join(folder, url.rsplit("/", 1)[1]), "rb") as f:
      return f.read()

  probs, counts = cifar10h.load_cifar10h("", cache_dir=str(tmp_path), fetch=fetch)
  assert probs.shape == (10000, 10) and len(served) == 2
  cifar10h.load_cifar10h("", cache_dir=str(tmp_path), fetch=fetch)
  assert len(served) == 2  # cached and verified: nothing fetched again
  with pytest.raises(InputError, match="SHA-256"):
    cifar10h.load_cifar10h("", cache_dir=str(tmp_path / "other"),
                           fetch=lambda url: fetch(url)[:-1] + b"x")

  def offline(url):
    raise OSError("network unreachable")

  with pytest.raises(InputError, match="Offline"):
    cifar10h.load_cifar10h("", cache_dir=str(tmp_path / "third"), fetch=offline)


def test_validation_split_is_seeded_and_disjoint():
  train, val = input_pipeline.train_validation_split(1000, 100, seed=3)
  again, _ = input_pipeline.train_validation_split(1000, 100, seed=3)
  other, _ = input_pipeline.train_validation_split(1000, 100, seed=4)
  assert len(val) == 100 and len(train) == 900 and not set(train) & set(val)
  np.testing.assert_array_equal(train, again)
  assert not np.array_equal(train, other)
  with pytest.raises(InputError, match="num_validation"):
    input_pipeline.train_validation_split(1000, 1000, seed=0)


def test_train_batches_are_deterministic_and_resumable():
  rng = np.random.default_rng(0)
  examples = {"image": rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
              "label": np.arange(40, dtype=np.int32)}
  prep = input_pipeline.PREPROCESSING["classifier"]
  run = input_pipeline.train_batches(examples, 8, prep, seed=1)
  batches = [next(run) for _ in range(7)]  # crosses the epoch boundary (5 steps/epoch)
  assert batches[0]["image"].shape == (8, 32, 32, 3)  # this (only) process's rows
  epoch = np.concatenate([b["label"].reshape(-1) for b in batches[:5]])
  assert sorted(epoch.tolist()) == list(range(40))  # each image once per epoch
  resumed = input_pipeline.train_batches(examples, 8, prep, seed=1, start_step=6)
  np.testing.assert_array_equal(next(resumed)["image"], batches[6]["image"])


def test_preprocessing_per_task():
  images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
  plain = input_pipeline.preprocess(images, input_pipeline.PREPROCESSING["generative"], None)
  np.testing.assert_allclose(plain, images / 255.0, atol=1e-7)
  rng = np.random.default_rng(0)
  flipped_or_not = input_pipeline.preprocess(
      images, input_pipeline.PREPROCESSING["generative"], rng)
  for got, image in zip(flipped_or_not, images / 255.0):  # flips only, never crops
    assert np.allclose(got, image) or np.allclose(got, image[:, ::-1])
  normalised = input_pipeline.preprocess(images, input_pipeline.PREPROCESSING["classifier"], None)
  expected = (images / 255.0 - input_pipeline.CIFAR10_MEAN) / input_pipeline.CIFAR10_STD
  np.testing.assert_allclose(normalised, expected, rtol=1e-5, atol=1e-5)
  cropped = input_pipeline.preprocess(images, input_pipeline.PREPROCESSING["classifier"],
                                      np.random.default_rng(1))
  assert cropped.shape == images.shape and not np.allclose(cropped, normalised)


def test_eval_batches_pad_and_mask():
  examples = {"image": np.zeros((10, 32, 32, 3), np.uint8), "label": np.arange(10)}
  batches = list(input_pipeline.eval_batches(
      examples, 4, input_pipeline.PREPROCESSING["classifier"]))
  assert len(batches) == 3
  assert batches[-1]["mask"].reshape(-1).tolist() == [True, True, False, False]
  with pytest.raises(InputError, match="batch_size"):
    next(input_pipeline.eval_batches(examples, 0, input_pipeline.PREPROCESSING["classifier"]))
