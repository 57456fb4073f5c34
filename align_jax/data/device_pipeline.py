"""Device input pipeline: the training set kept on the devices, batches made inside the step.

When the training arrays fit in device memory (CIFAR-10's 50,000 uint8 images are 150 MB), they
are put on every device once, as uint8, and each train step draws its own batch: the epoch's
shuffle, the random crop, the flip and the normalisation run inside the jitted step from
explicit keys and the step number. Nothing crosses from the host per step, and a run resumed
at any step draws exactly the batches an uninterrupted run would (everything is a function of
the seed and the step). The augmentation has the host pipeline's definition
(input_pipeline.preprocess: zero padding by 4 then a 32x32 crop, then a horizontal flip); only
the random choices come from JAX keys instead of numpy generators.

Alternating flips (optional): each image gets one random flip bit for the run, and odd epochs
invert it, so every pair of epochs shows each image both ways round instead of by chance.
"""

import dataclasses
import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
from jax import lax

from align_jax.data import input_pipeline
from align_jax.runtime import parallel

# Share of the smallest local device's memory the training arrays may take on the device.
DEVICE_MEMORY_SHARE = 0.25
_ORDER, _AUGMENT, _FLIP_BITS = 0, 1, 2  # independent streams of the data key


def data_key(seed: int) -> jax.Array:
  """The pipeline's root key: independent of the initialisation and dropout keys."""
  return jax.random.fold_in(jax.random.key(seed), 0xDA7A)


def fits_on_device(examples: dict) -> tuple[bool, str]:
  """(whether `examples` fit within DEVICE_MEMORY_SHARE of every local device, why)."""
  size = sum(v.nbytes for v in examples.values())
  limits = [(d.memory_stats() or {}).get("bytes_limit") for d in jax.local_devices()]
  if any(limit is None for limit in limits):  # the CPU reports none: the arrays are in RAM
    return True, f"{size / 2**20:.0f} MB of training arrays, host memory"
  limit = min(limits)
  ok = size <= DEVICE_MEMORY_SHARE * limit
  return ok, (f"{size / 2**20:.0f} MB of training arrays against {limit / 2**30:.1f} GB per "
              f"device ({'within' if ok else 'over'} {DEVICE_MEMORY_SHARE:.0%})")


def choose(requested: str, examples: dict) -> tuple[str, str]:
  """('device' or 'host', why) for config.input_pipeline 'auto', 'device' or 'host'."""
  if requested == "host":
    return "host", "input_pipeline='host'"
  ok, why = fits_on_device(examples)
  if requested == "device" or ok:
    return "device", why
  return "host", why + "; set input_pipeline='device' to force it"


def draw_augmentation(key: jax.Array, n: int, prep) -> input_pipeline.Augmentation:
  """Crop offsets in 0..8 and flips with probability 1/2 for n images (None where `prep` has
  no such augmentation), as jax arrays."""
  crop_key, flip_key = jax.random.split(key)
  top = left = flip = None
  if prep.random_crop:
    span = 2 * input_pipeline.CROP_PADDING + 1
    top, left = jax.random.randint(crop_key, (2, n), 0, span)
  if prep.random_flip:
    flip = jax.random.bernoulli(flip_key, 0.5, (n,))
  return input_pipeline.Augmentation(top, left, flip)


def augment(images: jax.Array, prep, augmentation: input_pipeline.Augmentation) -> jax.Array:
  """uint8 [b, h, w, c] -> float32, exactly input_pipeline.preprocess's definition."""
  if augmentation.top is not None:
    _, h, w, c = images.shape
    pad = input_pipeline.CROP_PADDING
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    crop = lambda image, top, left: lax.dynamic_slice(image, (top, left, 0), (h, w, c))
    images = jax.vmap(crop)(padded, augmentation.top, augmentation.left)
  if augmentation.flip is not None:
    images = jnp.where(augmentation.flip[:, None, None, None], images[:, :, ::-1], images)
  x = images.astype(jnp.float32) / 255.0
  if prep.normalize:
    x = (x - input_pipeline.CIFAR10_MEAN) / input_pipeline.CIFAR10_STD
  return x


@functools.partial(jax.jit, static_argnums=2)
def epoch_order(key: jax.Array, epoch, n: int) -> jax.Array:
  """The order in which epoch `epoch` visits the n training examples."""
  return jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, _ORDER), epoch), n)


@functools.partial(jax.jit, static_argnums=1)
def flip_bits_of(key: jax.Array, n: int) -> jax.Array:
  """Each example's flip in even epochs (alternating flips invert it in odd ones)."""
  return jax.random.bernoulli(jax.random.fold_in(key, _FLIP_BITS), 0.5, (n,))


@dataclasses.dataclass(frozen=True)
class DeviceBatches:
  """How a train step draws its batch from arrays on the device (hashable: a jit constant)."""
  global_batch: int
  steps_per_epoch: int
  prep: input_pipeline.Preprocessing
  alternating_flips: bool = False

  def draw(self, source: dict, step) -> dict:
    """The global batch of training step `step` (0-based) from a `sources` item, split over
    the devices."""
    arrays, key = source["arrays"], source["key"]
    epoch, offset = jnp.divmod(step, self.steps_per_epoch)
    idx = lax.dynamic_slice_in_dim(source["order"], offset * self.global_batch,
                                   self.global_batch)
    batch = {name: value[idx] for name, value in arrays.items()}
    augmentation = draw_augmentation(
        jax.random.fold_in(jax.random.fold_in(key, _AUGMENT), step), self.global_batch,
        self.prep)
    if self.alternating_flips and augmentation.flip is not None:
      augmentation = dataclasses.replace(
          augmentation, flip=source["flip_bits"][idx] ^ (epoch % 2 == 1))
    batch["image"] = augment(batch["image"], self.prep, augmentation)
    return lax.with_sharding_constraint(batch, parallel.batch_split())

  def sources(self, arrays: dict, key: jax.Array, start_step: int = 0) -> Iterator[dict]:
    """What each train step from `start_step` on takes: {'arrays', 'key', 'order',
    'flip_bits'}, replicated on every device: the epoch's order is computed there once per
    epoch (a permutation costs as much as several batches' augmentation), the images' flip
    bits for alternating flips once."""
    arrays, key = parallel.put_replicated(arrays), parallel.put_replicated(key)
    n = arrays["image"].shape[0]
    flip_bits = flip_bits_of(key, n) if self.alternating_flips else None
    for epoch, positions in input_pipeline.epoch_walk(start_step, self.steps_per_epoch):
      source = {"arrays": arrays, "key": key, "order": epoch_order(key, epoch, n),
                "flip_bits": flip_bits}
      for _ in positions:
        yield source
