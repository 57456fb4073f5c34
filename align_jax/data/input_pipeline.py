"""Host input pipeline: seeded split, per-task preprocessing, batches as global arrays.

Training batches come from a per-epoch permutation seeded by (seed, epoch), so a run resumed at
step s sees exactly the batches an uninterrupted run would. Each process of a multi-host run
preprocesses only the rows of every global batch that its devices hold (runtime/parallel.py),
with the augmentation drawn for the whole batch, so the result does not depend on how many
processes or devices share it. A background thread prepares the next batches while the devices
run.
"""

import dataclasses
import queue
import threading
from collections.abc import Iterator

import numpy as np

from align_jax.errors import InputError
from align_jax.runtime import parallel

# Per-channel statistics of the CIFAR-10 training images (RGB, on [0, 1]).
CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616], np.float32)
CROP_PADDING = 4


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """What a task does to uint8 images. Augmentations apply to training batches only."""
  random_crop: bool  # random 32x32 crop of the image zero-padded by 4 pixels
  random_flip: bool  # horizontal flip with probability 1/2
  normalize: bool  # per-channel (x - mean) / std; otherwise images on [0, 1]


PREPROCESSING = {
    "classifier": Preprocessing(random_crop=True, random_flip=True, normalize=True),
    "generative": Preprocessing(random_crop=False, random_flip=True, normalize=False),
}


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """Per-image random choices: crop offsets (None: no crop) and horizontal flips (None: none)."""
  top: np.ndarray | None
  left: np.ndarray | None
  flip: np.ndarray | None

  def take(self, idx) -> "Augmentation":
    pick = lambda a: None if a is None else a[idx]
    return Augmentation(pick(self.top), pick(self.left), pick(self.flip))


def draw_augmentation(n: int, prep: Preprocessing, rng: np.random.Generator) -> Augmentation:
  """The random choices for n images (drawn for a whole global batch, so every process of a
  multi-host run applies the same ones to its slice as a single process would)."""
  crop = prep.random_crop
  top = rng.integers(0, 2 * CROP_PADDING + 1, size=n) if crop else None
  left = rng.integers(0, 2 * CROP_PADDING + 1, size=n) if crop else None
  flip = rng.random(n) < 0.5 if prep.random_flip else None
  return Augmentation(top, left, flip)


def preprocess(images: np.ndarray, prep: Preprocessing, rng: np.random.Generator | None,
               augmentation: Augmentation | None = None) -> np.ndarray:
  """uint8 [b, 32, 32, 3] -> float32 [b, 32, 32, 3]. Augmentation (training only): drawn from
  `rng`, or given; `rng=None` and no `augmentation` means none."""
  if augmentation is None and rng is not None:
    augmentation = draw_augmentation(len(images), prep, rng)
  if augmentation is not None and augmentation.top is not None:
    b, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (CROP_PADDING,) * 2, (CROP_PADDING,) * 2, (0, 0)))
    rows = (augmentation.top[:, None] + np.arange(h))[:, :, None]
    cols = (augmentation.left[:, None] + np.arange(w))[:, None, :]
    images = padded[np.arange(b)[:, None, None], rows, cols]
  if augmentation is not None and augmentation.flip is not None:
    images = np.where(augmentation.flip[:, None, None, None], images[:, :, ::-1], images)
  x = images.astype(np.float32) / 255.0
  if prep.normalize:
    x = (x - CIFAR10_MEAN) / CIFAR10_STD
  return x


def train_validation_split(num_train: int, num_validation: int,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Seeded, fixed hold-out of `num_validation` training images for model selection."""
  if not 0 < num_validation < num_train:
    raise InputError(f"num_validation={num_validation} must be in 1..{num_train - 1} "
                     f"(the training split has {num_train} images).")
  order = np.random.default_rng([seed, 0x5EED]).permutation(num_train)
  return np.sort(order[num_validation:]), np.sort(order[:num_validation])


def epoch_walk(start_step: int, steps_per_epoch: int) -> Iterator[tuple[int, range]]:
  """(epoch, the positions in it still to visit) from training step `start_step` on, endless:
  how both pipelines resume mid-epoch exactly where an uninterrupted run would be."""
  epoch, offset = divmod(start_step, steps_per_epoch)
  while True:
    yield epoch, range(offset, steps_per_epoch)
    epoch, offset = epoch + 1, 0


def train_batches(examples: dict, global_batch: int, prep: Preprocessing, seed: int,
                  start_step: int = 0) -> Iterator[dict]:
  """Endless training batches (this process's rows of each global batch of `global_batch`);
  `examples` maps names to arrays with a leading example axis."""
  parallel.check_batch_size(global_batch)
  n = len(examples["image"])
  steps_per_epoch = n // global_batch
  if steps_per_epoch == 0:
    raise InputError(f"batch_size={global_batch} exceeds the {n} training examples.")
  mine = parallel.process_rows(global_batch)
  for epoch, positions in epoch_walk(start_step, steps_per_epoch):
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for i in positions:
      idx = order[i * global_batch:(i + 1) * global_batch][mine]
      augmentation = draw_augmentation(global_batch, prep,
                                       np.random.default_rng([seed, epoch, i])).take(mine)
      batch = {k: v[idx] for k, v in examples.items()}
      batch["image"] = preprocess(batch["image"], prep, None, augmentation)
      yield batch


def eval_batches(examples: dict, batch_size: int, prep: Preprocessing) -> Iterator[dict]:
  """One pass in order, in batches of `batch_size` rounded up to a multiple of the device
  count, the last one zero-padded; `mask` marks the real examples (this process's rows)."""
  if batch_size < 1:
    raise InputError(f"eval_batch_size={batch_size} must be >= 1.")
  global_batch = parallel.padded_size(batch_size)
  n = len(examples["image"])
  mine = parallel.process_rows(global_batch)
  for start in range(0, n, global_batch):
    idx = np.arange(start, start + global_batch)[mine]
    mask = idx < n
    idx = np.where(mask, idx, 0)
    batch = {k: v[idx] for k, v in examples.items()}
    batch["image"] = preprocess(batch["image"], prep, None)
    batch["mask"] = mask
    yield batch


def _in_background(iterator: Iterator, size: int) -> Iterator:
  """Runs a host iterator in a thread so preprocessing overlaps the device step.

  tf.data would do this too, but it would put TensorFlow in every training process; numpy
  releases the GIL in the heavy operations, so one thread keeps the devices fed.
  """
  items: queue.Queue = queue.Queue(maxsize=size)
  done = object()

  def produce():
    try:
      for item in iterator:
        items.put(item)
      items.put(done)
    except BaseException as e:  # pylint: disable=broad-except
      items.put(e)

  threading.Thread(target=produce, daemon=True).start()
  while True:
    item = items.get()
    if item is done:
      return
    if isinstance(item, BaseException):
      raise item
    yield item


def on_devices(iterator: Iterator[dict], global_batch: int, size: int = 2) -> Iterator[dict]:
  """Batches of this process's rows (of global batches of `global_batch` rows) as global
  arrays split over every device, prepared `size` ahead in a background thread."""
  return _in_background((parallel.global_batch(rows, global_batch) for rows in iterator), size)
