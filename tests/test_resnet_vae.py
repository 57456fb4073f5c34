"""ResNet family and the VAE: shapes, counts, the VAE objective, weight files, smoke runs."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from align_jax.errors import InputError
from align_jax.models import create_model
from align_jax.models.vae import reparameterize
from align_jax.training import loop, objectives, pretrained, steps, tasks, train_state
from experiments.configs import resnet50 as resnet50_config
from experiments.configs import vae as vae_config


def _shapes(name, **kwargs):
  model = create_model(name, **kwargs)
  x = jnp.zeros((2, 32, 32, 3))
  variables = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, x, train=False))
  _, features = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  count = sum(p.size for p in jax.tree.leaves(variables["params"]))
  return count, {k: v.shape for k, v in features.items()}


@pytest.mark.parametrize("stem,count,sizes", [
    ("cifar", 23_520_842, (32, 32, 32, 16, 8, 4)),
    ("imagenet", 23_528_522, (8, 8, 8, 4, 2, 1)),
])
def test_resnet50_parameters_and_named_features(stem, count, sizes):
  got_count, shapes = _shapes("resnet50", stem=stem)
  assert got_count == count  # "about 23.5 million", as the docstring states
  widths = {"stem": 64, "stage1": 256, "stage2": 512, "stage3": 1024, "stage4": 2048}
  for (name, width), size in zip(widths.items(), sizes[1:]):
    assert shapes[name] == (2, size, size, width), name
  assert shapes["penultimate"] == (2, 2048) and shapes["logits"] == (2, 10)


def test_resnet18_is_a_one_liner_of_the_same_module():
  count, shapes = _shapes("resnet18")
  assert count == 11_173_962 and shapes["penultimate"] == (2, 512)
  with pytest.raises(InputError, match="stem must be one of"):
    _shapes("resnet18", stem="tiny")


def test_last_batchnorm_of_each_block_starts_at_zero():
  model = create_model("resnet18")
  params = model.init({"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)),
                      train=False)["params"]
  block = params["BasicBlock_0"]
  assert np.all(np.asarray(block["BatchNorm_1"]["scale"]) == 0)
  assert np.all(np.asarray(block["BatchNorm_0"]["scale"]) == 1)


def test_reparameterization_is_deterministic_per_key_with_the_right_moments():
  mean, logvar = jnp.array([[1.0, -2.0]]), jnp.array([[0.0, jnp.log(0.25)]])
  key = jax.random.key(3)
  np.testing.assert_array_equal(reparameterize(mean, logvar, key),
                                reparameterize(mean, logvar, key))
  assert not np.allclose(reparameterize(mean, logvar, key),
                         reparameterize(mean, logvar, jax.random.key(4)))
  draws = jax.vmap(lambda k: reparameterize(mean, logvar, k)[0])(
      jax.random.split(jax.random.key(0), 20000))
  np.testing.assert_allclose(draws.mean(0), [1.0, -2.0], atol=0.03)
  np.testing.assert_allclose(draws.var(0), [1.0, 0.25], rtol=0.05)


def test_closed_form_kl_matches_monte_carlo():
  mean, logvar = jnp.array([[0.5, -1.0, 0.2]]), jnp.array([[0.3, -0.7, 0.0]])
  z = jax.vmap(lambda k: reparameterize(mean, logvar, k)[0])(
      jax.random.split(jax.random.key(1), 200_000))
  log_q = jax.scipy.stats.norm.logpdf(z, mean[0], jnp.exp(0.5 * logvar[0])).sum(-1)
  log_p = jax.scipy.stats.norm.logpdf(z).sum(-1)
  assert float(objectives.gaussian_kl(mean, logvar)[0]) == pytest.approx(
      float(jnp.mean(log_q - log_p)), abs=0.01)


def test_vae_loss_decreases_on_a_fixed_batch():
  config = vae_config.get_config("smoke")
  config.learning_rate = 3e-3
  model = create_model("vae", latent_dim=16)
  task = tasks.VAETask(beta=1.0)
  coarse = np.random.default_rng(0).random((16, 4, 4, 3))  # smooth images a VAE can learn
  images = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2).astype(np.float32)
  variables = task.init_variables(model, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  state = train_state.create_train_state(variables, model.apply,
                                         train_state.create_optimizer(config, 10))
  train, _ = steps.parallel_steps(task, model)
  key = jax.random.key(1)
  losses = []
  for _ in range(20):
    state, metrics = train(state, {"image": images}, key)
    losses.append({k: float(v) for k, v in metrics.compute().items()})
  # From a constant (sigmoid(0) = 0.5) output towards the images; without updates, or with
  # the gradient's sign flipped, the loss would stay or grow.
  assert losses[-1]["loss"] < 0.98 * losses[0]["loss"], [l["loss"] for l in losses[::5]]
  assert losses[-1]["recon_l1"] < losses[0]["recon_l1"]
  assert losses[0]["loss"] == pytest.approx(losses[0]["recon_l1"] + losses[0]["kl"], rel=1e-5)


def test_kl_warmup_is_linear():
  task = tasks.VAETask(beta=2.0, kl_warmup_steps=10)
  assert [float(task.beta_at(s)) for s in (0, 5, 10, 20)] == [0.0, 1.0, 2.0, 2.0]


def test_weights_file_round_trip_and_mismatch(tmp_path):
  model = create_model("resnet18", num_classes=10)
  init = lambda seed: model.init({"params": jax.random.key(seed)}, jnp.zeros((1, 32, 32, 3)),
                                 train=False)
  source, target = init(1), init(2)
  flat = traverse_util.flatten_dict(jax.device_get(source), sep="/")
  np.savez(tmp_path / "weights.npz", **flat)
  merged = pretrained.merge_variables(target, pretrained.load_variables(
      str(tmp_path / "weights.npz")))
  for a, b in zip(jax.tree.leaves(merged), jax.tree.leaves(source)):
    np.testing.assert_array_equal(a, b)
  flat["params/Dense_0/kernel"] = np.zeros((512, 100), np.float32)
  del flat["params/Dense_0/bias"]
  np.savez(tmp_path / "bad.npz", **flat)
  with pytest.raises(InputError, match=r"(?s)missing in the file \(1\).*Dense_0/bias.*"
                                       r"shape mismatch.*Dense_0/kernel"):
    pretrained.merge_variables(target, pretrained.load_variables(str(tmp_path / "bad.npz")))


def _tiny(config, data_dir):
  config.data_dir = data_dir
  config.num_validation, config.train_subset, config.test_subset = 60, 240, 60
  config.batch_size, config.eval_batch_size, config.num_epochs = 60, 60, 1
  return config


def test_vae_run_writes_grids_checkpoints_events_and_resumes(fake_data_dir, tmp_path):
  config = _tiny(vae_config.get_config("smoke"), fake_data_dir)
  config.model_kwargs.latent_dim = 8
  workdir = str(tmp_path / "vae")
  result = loop.train_and_evaluate(config, workdir)
  assert result["step"] == 4 and result["test"]["psnr"] > 0
  assert set(result["test"]) == {"loss", "recon_l1", "kl", "psnr"}
  assert sorted(os.listdir(os.path.join(workdir, "samples"))) == [
      "prior_samples_0000004.png", "reconstructions_0000004.png"]
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["4"]
  again = loop.train_and_evaluate(config, workdir)  # resumes at the end: no new steps
  assert again["test"] == pytest.approx(result["test"])


@pytest.mark.slow
def test_resnet_run_writes_checkpoints_and_resumes(fake_data_dir, tmp_path):
  config = _tiny(resnet50_config.get_config("smoke"), fake_data_dir)
  workdir = str(tmp_path / "resnet")
  result = loop.train_and_evaluate(config, workdir)
  assert result["step"] == 4 and os.listdir(os.path.join(workdir, "checkpoints")) == ["4"]
  again = loop.train_and_evaluate(config, workdir)
  assert again["test"] == pytest.approx(result["test"])
