"""The training engine: steps, data parallelism, checkpoints, resume, and clear failures."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from align_jax.errors import InputError
from align_jax.models import create_model
from align_jax.training import checkpoint, loop, objectives, steps, tasks, train_state
from experiments.configs import philnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cross_entropy_hard_and_soft_targets_agree():
  logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
  hard = objectives.cross_entropy(logits, jnp.array([0, 2]))
  soft = objectives.cross_entropy(logits, jax.nn.one_hot(jnp.array([0, 2]), 3))
  np.testing.assert_allclose(hard, soft, rtol=1e-6)
  expected = -jax.nn.log_softmax(logits)[jnp.arange(2), jnp.array([0, 2])]
  np.testing.assert_allclose(hard, expected, rtol=1e-6)
  mixed = objectives.cross_entropy(logits, jnp.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
  np.testing.assert_allclose(mixed[0], -jax.nn.log_softmax(logits[0])[:2].mean(), rtol=1e-6)


def test_weight_decay_skips_norm_and_bias_parameters():
  model = create_model("philnet")
  params = model.init({"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)), train=False)
  mask = train_state.decay_mask(params["params"])
  assert mask["Conv_0"]["kernel"] and mask["Dense_0"]["kernel"]
  assert not mask["BatchNorm_0"]["scale"] and not mask["Dense_0"]["bias"]


def _fixed_batch(size=8):
  rng = np.random.default_rng(0)
  return {"image": rng.standard_normal((size, 32, 32, 3)).astype(np.float32),
          "label": rng.integers(0, 10, size).astype(np.int32)}


def test_train_steps_reduce_loss_on_a_fixed_batch():
  config = philnet.get_config("smoke")
  model = create_model("philnet", dropout_rate=0.0)
  task = tasks.ClassificationTask()
  variables = task.init_variables(model, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  state = train_state.create_train_state(variables, model.apply,
                                         train_state.create_optimizer(config, 10))
  train, _ = steps.parallel_steps(task, model)
  key = jax.random.key(1)
  batch = _fixed_batch()
  losses = []
  for _ in range(8):
    state, metrics = train(state, batch, key)
    losses.append(float(metrics.compute()["loss"]))
  assert losses[-1] < 0.5 * losses[0], losses
  assert int(state.step) == 8


def _saved_state(workdir, step):
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  restored = manager.restore(step, args=ocp.args.StandardRestore())
  manager.close()
  return restored


def test_run_writes_outputs_and_an_interrupted_run_resumes_identically(tiny_philnet_config,
                                                                       tmp_path, monkeypatch):
  straight = str(tmp_path / "straight")
  result = loop.train_and_evaluate(tiny_philnet_config, straight)
  assert result["step"] == 8 and 0 <= result["test"]["accuracy"] <= 1
  files = os.listdir(straight)
  assert "config.json" in files and any(f.startswith("events.out.tfevents") for f in files)
  with open(os.path.join(straight, "config.json")) as f:
    assert json.load(f)["model"] == "philnet"
  assert sorted(int(s) for s in os.listdir(os.path.join(straight, "checkpoints"))) == [4, 8]

  interrupted = str(tmp_path / "interrupted")
  original_save = checkpoint.Checkpointer.save

  def save_then_crash(self, step, state, metrics):
    original_save(self, step, state, metrics)  # synchronous: committed when it returns
    raise KeyboardInterrupt("simulated pre-emption")

  monkeypatch.setattr(checkpoint.Checkpointer, "save", save_then_crash)
  with pytest.raises(KeyboardInterrupt):
    loop.train_and_evaluate(tiny_philnet_config, interrupted)
  monkeypatch.setattr(checkpoint.Checkpointer, "save", original_save)
  resumed = loop.train_and_evaluate(tiny_philnet_config, interrupted)
  assert resumed["step"] == 8
  a, b = _saved_state(straight, 8), _saved_state(interrupted, 8)
  assert int(a["step"]) == int(b["step"]) == 8
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_non_finite_loss_stops_without_a_checkpoint(tiny_philnet_config, tmp_path,
                                                    monkeypatch):
  def poisoned(*args, **kwargs):
    return jnp.full(args[0].shape[:1], jnp.nan)

  monkeypatch.setattr(objectives, "cross_entropy", poisoned)
  workdir = str(tmp_path / "nan")
  with pytest.raises(FloatingPointError, match="non-finite.*step 2.*no checkpoint was saved yet"):
    loop.train_and_evaluate(tiny_philnet_config, workdir)
  assert not os.listdir(os.path.join(workdir, "checkpoints"))


@pytest.mark.parametrize("field,value,message", [
    ("num_epochs", 0, "num_epochs=0 must be > 0"),
    ("learning_rate", -1.0, "learning_rate=-1.0 must be > 0"),
    ("warmup_epochs", 5.0, "warmup_epochs=5.0 must be in"),
    ("model", "vgg", "model='vgg' is not one of"),
    ("dtype", "float16", "dtype='float16' is not one of"),
    ("layer_impl", "fast", "layer_impl='fast' is not one of"),
    ("data_dir", "/nonexistent/dir", "data_dir='/nonexistent/dir' is not a directory"),
])
def test_bad_config_values_are_explained(tiny_philnet_config, tmp_path, field, value, message):
  with tiny_philnet_config.unlocked():
    setattr(tiny_philnet_config, field, value)
  with pytest.raises(InputError, match=message):
    loop.train_and_evaluate(tiny_philnet_config, str(tmp_path))


def test_missing_data_is_explained(tiny_philnet_config, tmp_path):
  (tmp_path / "empty").mkdir()
  tiny_philnet_config.data_dir = str(tmp_path / "empty")  # exists, but holds no CIFAR-10 files
  with pytest.raises(InputError, match="No cifar-10-batches-bin"):
    loop.train_and_evaluate(tiny_philnet_config, str(tmp_path / "w"))


def test_entry_point_reports_errors_without_traceback(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.train_philnet", f"--workdir={tmp_path}",
       "--config=experiments/configs/philnet.py:smoke", "--config.data_dir=/nonexistent"],
      cwd=ROOT, capture_output=True, text=True, check=False)
  assert proc.returncode != 0
  assert "error: Bad config" in proc.stderr and "Traceback" not in proc.stderr
  help_text = subprocess.run([sys.executable, "-m", "experiments.train_philnet", "--help"],
                             cwd=ROOT, capture_output=True, text=True, check=False).stdout
  for option in ("--workdir=DIR", "--config=FILE", "--distributed", "--verbosity"):
    assert option in help_text, help_text
