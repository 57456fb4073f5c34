"""The device input pipeline: the host pipeline's augmentation, reproducible batches, exact
resumption, alternating flips, and the automatic choice between the two pipelines."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from align_jax.data import device_pipeline, input_pipeline
from align_jax.training import loop
from tests import conftest, crash_points, test_faults

CLASSIFIER = input_pipeline.PREPROCESSING["classifier"]
RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(input_pipeline.PREPROCESSING))
def test_device_augmentation_is_the_host_definition(name):
  """The same crop offsets and flips (drawn from fixed keys) give the host's images exactly."""
  prep = input_pipeline.PREPROCESSING[name]
  for seed in range(3):
    drawn = device_pipeline.draw_augmentation(jax.random.key(seed), len(IMAGES), prep)
    on_device = device_pipeline.augment(jnp.asarray(IMAGES), prep, drawn)
    as_numpy = input_pipeline.Augmentation(
        *(None if a is None else np.asarray(a) for a in (drawn.top, drawn.left, drawn.flip)))
    on_host = input_pipeline.preprocess(IMAGES, prep, None, as_numpy)
    # float rounding only: one grey level is 1/255/0.26 > 0.015 after normalisation
    np.testing.assert_allclose(np.asarray(on_device), on_host, rtol=0, atol=1e-5)
    if prep.random_crop:  # every offset 0..8 and both flips occur over 120 draws
      assert set(np.concatenate([np.asarray(drawn.top), np.asarray(drawn.left)])) <= set(range(9))
    assert 0 < np.asarray(drawn.flip).mean() < 1


def test_a_crop_moves_the_image_and_fills_with_black():
  image = IMAGES[:1]
  shifted = device_pipeline.augment(jnp.asarray(image), CLASSIFIER, input_pipeline.Augmentation(
      jnp.array([0]), jnp.array([8]), jnp.array([False])))
  expected = np.zeros_like(image)
  expected[:, 4:, :28] = image[:, :28, 4:]  # 4 rows of black above, 4 columns cut on the left
  np.testing.assert_allclose(np.asarray(shifted),
                             input_pipeline.preprocess(expected, CLASSIFIER, None), atol=1e-5)


def _batches(n=50, batch=10, alternating=False, seed=0, steps=15, start=0):
  arrays = {"image": np.random.default_rng(n).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            "label": np.arange(n)}
  batches = device_pipeline.DeviceBatches(batch, n // batch, CLASSIFIER, alternating)
  sources = batches.sources(arrays, device_pipeline.data_key(seed), start)
  draw = jax.jit(batches.draw)
  return arrays, [jax.device_get(draw(next(sources), jnp.int32(s)))
                  for s in range(start, start + steps)]


def test_every_epoch_is_a_new_permutation_and_the_stream_is_reproducible():
  _, batches = _batches()
  epochs = [np.concatenate([b["label"] for b in batches[e * 5:(e + 1) * 5]]) for e in range(3)]
  for labels in epochs:
    assert sorted(labels) == list(range(50))  # each image exactly once per epoch
  assert not np.array_equal(epochs[0], epochs[1])
  _, again = _batches()
  for a, b in zip(batches, again):
    np.testing.assert_array_equal(a["image"], b["image"])
  _, other_seed = _batches(seed=1)
  assert not np.array_equal(batches[0]["label"], other_seed[0]["label"])


def test_a_stream_started_mid_epoch_continues_the_uninterrupted_one():
  _, whole = _batches(steps=15)
  _, resumed = _batches(steps=8, start=7)
  for a, b in zip(whole[7:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])


OFFSETS = np.array([(t, l) for t in range(9) for l in range(9)])


def _flipped(batch, arrays) -> np.ndarray:
  """Which images of a batch were flipped: the closest of every crop of either orientation
  of the source image (numpy's definition)."""
  flags = []
  for image, label in zip(batch["image"], batch["label"]):
    source = arrays["image"][label]
    distance = {}
    for flip in (False, True):
      views = np.repeat((source[:, ::-1] if flip else source)[None], len(OFFSETS), axis=0)
      crops = input_pipeline.preprocess(views, CLASSIFIER, None, input_pipeline.Augmentation(
          OFFSETS[:, 0], OFFSETS[:, 1], None))
      distance[flip] = np.abs(crops - image).max(axis=(1, 2, 3)).min()
    flags.append(distance[True] < distance[False])
  return np.array(flags)


def test_alternating_flips_show_each_image_both_ways_in_consecutive_epochs():
  arrays, batches = _batches(n=20, batch=10, alternating=True, steps=6)
  flips = {}
  for step, batch in enumerate(batches):
    for label, flip in zip(batch["label"], _flipped(batch, arrays)):
      flips.setdefault(int(label), []).append((step // 2, flip))
  for history in flips.values():
    by_epoch = dict(history)
    assert by_epoch[0] != by_epoch[1] and by_epoch[1] != by_epoch[2]
  assert 0 < np.mean([dict(h)[0] for h in flips.values()]) < 1  # a random start per image


def test_the_choice_is_logged_and_host_when_asked_or_too_big(monkeypatch):
  examples = {"image": IMAGES}
  assert device_pipeline.choose("host", examples)[0] == "host"
  assert device_pipeline.choose("auto", examples)[0] == "device"  # the CPU holds it in RAM

  class SmallDevice:
    def memory_stats(self):
      return {"bytes_limit": 4 * IMAGES.nbytes - 1}

  monkeypatch.setattr(jax, "local_devices", lambda: [SmallDevice()])
  choice, why = device_pipeline.choose("auto", examples)
  assert choice == "host" and "over 25%" in why and "input_pipeline='device'" in why
  assert device_pipeline.choose("device", examples)[0] == "device"


@pytest.mark.slow  # two training processes and a third run; the stream test above is the quick form
def test_a_run_killed_mid_epoch_resumes_bit_identically(fake_data_dir, tmp_path):
  """kill -9 right after step 7 (4 steps per epoch, a checkpoint every 3 steps: the newest is
  step 6, mid-epoch): the resumed run ends with the uninterrupted run's exact state, drawing
  its batches on the device."""
  config = conftest.tiny_philnet(fake_data_dir)
  config.input_pipeline, config.alternating_flips = "device", True
  config.checkpoint_every_steps = 3
  whole = str(tmp_path / "whole")
  loop.train_and_evaluate(config, whole)
  killed = str(tmp_path / "killed")
  extra = ["--config.input_pipeline=device", "--config.alternating_flips=True"]
  crashed = test_faults._cli(["tests.crash_points", *test_faults._train_args(config, killed),
                              *extra], env={crash_points.ENV: "after_step:7"})
  assert crashed.returncode == crash_points.EXIT_CODE, crashed.stderr[-2000:]
  resumed = test_faults._cli([*test_faults._train_args(config, killed), *extra])
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "Resuming from the checkpoint of step 6" in resumed.stderr
  assert "Input pipeline: device" in resumed.stderr
  test_faults._assert_same_state(test_faults._state(killed, 8), test_faults._state(whole, 8))
