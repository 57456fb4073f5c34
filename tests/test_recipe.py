"""The fast recipe's techniques against independent references: whitening initialisation,
test-time augmentation, label smoothing, the weight average, SGD and the linear schedule; and
the `:fast` config's smoke variant end to end."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from align_jax.data import input_pipeline
from align_jax.errors import InputError
from align_jax.models import create_model
from align_jax.training import loop, pretrained, tasks, train_state, whitening
from experiments.configs import philnet

RNG = np.random.default_rng(0)


def _reference_patches(images: np.ndarray) -> np.ndarray:
  """Every valid 3x3 patch, flattened (row, column, channel), by explicit loops."""
  n, h, w, _ = images.shape
  return np.array([images[i, r:r + 3, c:c + 3, :].reshape(-1)
                   for i in range(n) for r in range(h - 2) for c in range(w - 2)])


def test_patch_covariance_matches_numpy():
  images = RNG.standard_normal((7, 9, 8, 3))
  mean, covariance = whitening.patch_covariance(images, (3, 3), chunk=3)
  patches = _reference_patches(images)
  np.testing.assert_allclose(mean, patches.mean(0), atol=1e-12)
  np.testing.assert_allclose(covariance, np.cov(patches.T, bias=True), atol=1e-12)


def test_whitening_kernel_whitens_the_leading_directions():
  """Correlated patches through the kernel's filters: the leading 8 directions come out
  decorrelated with variance lambda / (lambda + eps), and each filter has its negative."""
  mixing = RNG.standard_normal((3, 3)) + 2 * np.eye(3)
  images = (RNG.standard_normal((40, 12, 12, 3)) @ mixing).astype(np.float32)
  kernel = whitening.whitening_kernel(images, (3, 3, 3, 16))
  assert kernel.shape == (3, 3, 3, 16) and kernel.dtype == np.float32
  filters = kernel.reshape(27, 16)
  np.testing.assert_allclose(filters[:, 8:], -filters[:, :8])
  patches = _reference_patches(images.astype(np.float64))
  eigenvalues = np.linalg.eigvalsh(np.cov(patches.T, bias=True))[::-1][:8]
  outputs = (patches - patches.mean(0)) @ filters[:, :8].astype(np.float64)
  np.testing.assert_allclose(np.cov(outputs.T, bias=True),
                             np.diag(eigenvalues / (eigenvalues + whitening.EPS)), atol=2e-4)


def test_whitening_init_replaces_only_philnets_first_convolution():
  model = create_model("philnet")
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  images = RNG.standard_normal((20, 32, 32, 3)).astype(np.float32)
  new = whitening.initialise(variables, images)
  assert whitening.image_kernel_path(variables["params"])[0].key == "Conv_0"
  np.testing.assert_array_equal(new["params"]["Conv_0"]["kernel"],
                                whitening.whitening_kernel(images, (3, 3, 3, 32)))
  for path, leaf in jax.tree_util.tree_flatten_with_path(new["params"])[0]:
    if path[0].key != "Conv_0":
      np.testing.assert_array_equal(leaf, _get(variables["params"], path))
  with pytest.raises(InputError, match="even width"):
    whitening.whitening_kernel(images, (3, 3, 3, 7))


def _get(tree, path):
  for entry in path:
    tree = tree[entry.key]
  return tree


class _Probe(nn.Module):
  """A 'model' whose logits are fixed linear readouts of the image: TTA is checkable by hand."""

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    weights = jnp.asarray(np.random.default_rng(1).standard_normal((32 * 32 * 3, 10)),
                          jnp.float32)
    logits = x.reshape(len(x), -1) @ weights
    return logits, {"logits": logits}


def _numpy_view(images: np.ndarray, flip: bool, shift: int) -> np.ndarray:
  """The reference view: flipped, then output pixel (r, c) = input (r + shift, c + shift),
  black where that falls outside."""
  black = -input_pipeline.CIFAR10_MEAN / input_pipeline.CIFAR10_STD
  if flip:
    images = images[:, :, ::-1]
  out = np.broadcast_to(black, images.shape).copy()
  size = images.shape[1]  # square images
  src = slice(max(shift, 0), size + min(shift, 0))
  dst = slice(max(-shift, 0), size + min(-shift, 0))
  out[:, dst, dst] = images[:, src, src]
  return out


@pytest.mark.parametrize("mode", ["flip", "flip_shift"])
def test_test_time_augmentation_averages_the_documented_views(mode):
  images = RNG.standard_normal((6, 32, 32, 3)).astype(np.float32)
  labels = np.arange(6) % 10
  task = tasks.ClassificationTask(test_time_augmentation=mode)
  batch = {"image": jnp.asarray(images), "label": jnp.asarray(labels)}
  _, (_, outputs) = task.loss(_Probe(), {}, batch, jax.random.key(0), train=False, step=0)
  model = _Probe()
  views = {"flip": [((False, 0), .5), ((True, 0), .5)],
           "flip_shift": [((f, s), w * .5) for f in (False, True)
                          for s, w in ((0, .5), (-1, .25), (1, .25))]}[mode]
  expected = sum(w * np.asarray(model.apply({}, _numpy_view(images, f, s), train=False)[0])
                 for (f, s), w in views)
  np.testing.assert_allclose(outputs["tta_accuracy"], expected.argmax(-1) == labels)
  reference = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(expected), labels)
  np.testing.assert_allclose(outputs["tta_loss"], reference, rtol=1e-4, atol=1e-4)
  plain = np.asarray(model.apply({}, images, train=False)[0])
  np.testing.assert_allclose(outputs["accuracy"], plain.argmax(-1) == labels)
  assert task.eval_metrics.__name__ == "AugmentedClassifierMetrics"
  assert task.between_epochs().eval_metrics.__name__ == "ClassifierMetrics"


def test_label_smoothing_in_training_only():
  logits = jnp.asarray(RNG.standard_normal((5, 10)), jnp.float32)
  labels = jnp.arange(5)

  class Fixed(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      return logits, {}

  task = tasks.ClassificationTask(label_smoothing=0.2)
  batch = {"image": jnp.zeros((5, 32, 32, 3)), "label": labels}
  log_p = np.asarray(jax.nn.log_softmax(logits))
  smoothed = 0.8 * np.eye(10)[np.arange(5)] + 0.2 / 10
  train_loss = task.loss(Fixed(), {}, batch, jax.random.key(0), train=True, step=0)[0]
  np.testing.assert_allclose(train_loss, -(smoothed * log_p).sum(1).mean(), rtol=1e-5)
  eval_loss = task.loss(Fixed(), {}, batch, jax.random.key(0), train=False, step=0)[0]
  np.testing.assert_allclose(eval_loss, -log_p[np.arange(5), np.arange(5)].mean(), rtol=1e-5)
  with pytest.raises(InputError, match="test_time_augmentation"):
    tasks.ClassificationTask(test_time_augmentation="rotate")


def _config(**fields):
  config = philnet.get_config()
  config.update(fields)
  return config


def test_weight_average_follows_the_closed_form():
  """a_t = d_t a_{t-1} + (1 - d_t) w_t with d_t = min(decay, (1 + t) / (10 + t))."""
  variables = {"params": {"w": jnp.ones(3)}, "batch_stats": {"m": jnp.zeros(2)}}
  tx = optax.sgd(0.1)
  state = train_state.create_train_state(variables, None, tx, average_decay=0.9)
  expected_w, expected_m = np.ones(3), np.zeros(2)
  for t in range(1, 30):
    state = state.apply_gradients(grads={"w": jnp.full(3, float(t))},
                                  batch_stats={"m": jnp.full(2, float(t))}).update_average()
    decay = min(0.9, (1 + t) / (10 + t))
    expected_w = decay * expected_w + (1 - decay) * np.asarray(state.params["w"])
    expected_m = decay * expected_m + (1 - decay) * t
  np.testing.assert_allclose(state.variables()["params"]["w"], expected_w, rtol=1e-5)
  np.testing.assert_allclose(state.variables()["batch_stats"]["m"], expected_m, rtol=1e-5)
  plain = train_state.create_train_state(variables, None, tx)
  assert plain.average is None and plain.variables()["params"] is plain.params


def test_sgd_is_nesterov_with_coupled_decay_and_the_linear_schedule_is_a_triangle():
  config = _config(optimizer="sgd", learning_rate=0.4, momentum=0.9, weight_decay=0.01,
                   lr_schedule="linear", warmup_epochs=2.0, num_epochs=10)
  schedule = train_state.learning_rate_schedule(config, steps_per_epoch=10)
  np.testing.assert_allclose([schedule(s) for s in (0, 10, 20, 60, 100)],
                             [0.0, 0.2, 0.4, 0.2, 0.0], atol=1e-6)
  tx = train_state.create_optimizer(config, steps_per_epoch=10)
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
  grads = {"kernel": jnp.full((2, 2), 0.5), "bias": jnp.full(2, 0.5)}
  opt_state = tx.init(params)
  for step in range(3):  # by hand: g' = g + wd * p (kernels), v = m v + g', p -= lr (g' + m v)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  p, v = np.ones((2, 2)), np.zeros((2, 2))
  b, vb = np.ones(2), np.zeros(2)
  for step in range(3):
    lr = float(schedule(step))
    g = 0.5 + 0.01 * p
    v = 0.9 * v + g
    p = p - lr * (g + 0.9 * v)
    vb = 0.9 * vb + 0.5
    b = b - lr * (0.5 + 0.9 * vb)
  np.testing.assert_allclose(params["kernel"], p, rtol=1e-6)
  np.testing.assert_allclose(params["bias"], b, rtol=1e-6)


def test_fast_keeps_the_seed_network_and_is_a_named_variant():
  seed, fast = philnet.get_config(), philnet.get_config("fast")
  assert seed.optimizer == "adamw" and seed.num_epochs == 50 and not seed.whitening_init
  assert fast.model == seed.model and fast.model_kwargs.num_classes == 10
  assert fast.num_validation == seed.num_validation  # the study's training split
  shapes = [jax.tree.map(np.shape, create_model(c.model, **c.model_kwargs).init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)) for c in (seed, fast)]
  assert shapes[0] == shapes[1]


def test_fast_smoke_trains_and_reports_plain_and_augmented_accuracy(fake_data_dir, tmp_path):
  config = philnet.get_config("fast_smoke")
  config.data_dir = fake_data_dir
  config.num_validation, config.train_subset, config.test_subset = 60, 240, 60
  config.batch_size, config.eval_batch_size = 60, 60
  result = loop.train_and_evaluate(config, str(tmp_path / "fast"))
  assert set(result["test"]) == {"loss", "accuracy", "tta_loss", "tta_accuracy"}
  assert set(result["validation"]) == {"loss", "accuracy"}
  assert all(np.isfinite(v) for v in result["test"].values())
  exported = pretrained.load_variables(str(tmp_path / "fast"))
  restored = dict(jax.tree_util.tree_flatten_with_path(exported)[0])
  assert restored  # the export is the weight average, which training kept
  assert config.ema_decay > 0 and config.whitening_init and config.alternating_flips


def test_new_fields_are_checked_before_anything_runs(tmp_path):
  config = _config(optimizer="lamb", lr_schedule="step", ema_decay=1.0,
                   input_pipeline="gpu")
  with pytest.raises(InputError) as error:
    loop.train_and_evaluate(config, str(tmp_path / "w"))
  for field in ("optimizer", "lr_schedule", "ema_decay", "input_pipeline"):
    assert field in str(error.value)
  assert not (tmp_path / "w").exists()
  config = _config(input_pipeline="host", alternating_flips=True)
  with pytest.raises(InputError, match="alternating_flips needs the device pipeline"):
    loop.train_and_evaluate(config, str(tmp_path / "w"))


def test_the_task_arguments_are_checked_with_the_config_before_jax_loads(tmp_path):
  from align_jax.runtime import config_checks, names  # pylint: disable=g-import-not-at-top
  assert set(tasks.TEST_TIME_VIEWS) | {""} == set(names.TEST_TIME_AUGMENTATIONS)
  config = philnet.get_config("fast")
  config.task_kwargs.test_time_augmentation = "rotate"
  config.task_kwargs.label_smoothing = 1.5
  with pytest.raises(InputError) as error:
    config_checks.training(config)
  assert "test_time_augmentation='rotate'" in str(error.value)
  assert "label_smoothing=1.5" in str(error.value)
  config_checks.training(philnet.get_config())  # the seed's task_kwargs lack both: fine


def test_a_workdir_from_before_the_recipe_fields_resumes_with_their_old_behaviour():
  from align_jax.training import resume  # pylint: disable=g-import-not-at-top
  current = philnet.get_config().to_dict()
  older = {k: v for k, v in current.items() if k not in resume.FIELD_DEFAULTS}
  older["task_kwargs"] = {}
  assert resume.differences(older, dict(current, input_pipeline="host")) == {}
  assert resume.differences(older, current) == {"input_pipeline": ("host", "auto")}
  assert resume.differences(older, dict(current, input_pipeline="host", optimizer="sgd")) == {
      "optimizer": ("adamw", "sgd")}
