"""Fault injection: poisoned states, damaged checkpoints, changed settings, two jobs on one
workdir, bad data, full disks, crashes at named points. Each failure must stop with a clear
message or recover, never continue silently into another experiment or save damaged state."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from align_jax import features
from align_jax.errors import InputError
from align_jax.pipeline import finetune
from align_jax.runtime import workdir as workdir_lib
from align_jax.training import checkpoint, loop
from experiments.configs import finetune_cifar10h
from tests import conftest, crash_points

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI_FIELDS = ("num_validation", "train_subset", "test_subset", "batch_size", "eval_batch_size",
              "num_epochs", "log_every_steps", "warmup_epochs", "checkpoint_every_steps")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, fake_archive):
  """(config, workdir) of one finished tiny PhilNet run: 2 epochs of 4 steps, checkpoints 4, 8."""
  root = str(tmp_path_factory.mktemp("finished"))
  conftest.link_fake_archive(fake_archive, root)
  config = _tiny_config(root)
  loop.train_and_evaluate(config, os.path.join(root, "run"))
  return config, os.path.join(root, "run")


def _tiny_config(data_dir: str):
  config = conftest.tiny_philnet(data_dir)
  config.checkpoint_every_steps = 0  # epoch ends only, unless a test asks for more
  return config


def _copy(run: str, target) -> str:
  shutil.copytree(run, str(target), symlinks=True)
  return str(target)


def _state(workdir: str, step: int, folder: str = checkpoint.EPOCH_DIR) -> list[np.ndarray]:
  manager = ocp.CheckpointManager(os.path.join(workdir, folder),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  restored = manager.restore(step, args=ocp.args.StandardRestore())
  manager.close()
  import jax  # pylint: disable=g-import-not-at-top
  return [np.asarray(x) for x in jax.tree.leaves(restored)]


def _assert_same_state(a: list[np.ndarray], b: list[np.ndarray]) -> None:
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


def _largest_file(folder: str) -> str:
  files = [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
  return max(files, key=os.path.getsize)


@pytest.mark.slow
def test_a_poisoned_state_is_never_saved_and_a_sane_rerun_recovers(fake_data_dir, tmp_path):
  """With learning_rate=1e6, BatchNorm variances become inf by the first epoch end."""
  config = _tiny_config(fake_data_dir)
  config.update(dict(learning_rate=1e6, num_epochs=1))
  workdir = str(tmp_path / "poisoned")
  with pytest.raises(FloatingPointError, match="(?s)NaN or inf.*no checkpoint was saved yet"):
    loop.train_and_evaluate(config, workdir)
  assert not checkpoint.has_checkpoints(workdir)
  config.learning_rate = 1e-3  # the advice: lower it and rerun
  result = loop.train_and_evaluate(config, workdir)
  assert result["step"] == 4 and np.isfinite(result["test"]["loss"])
  assert all(np.all(np.isfinite(x)) for x in _state(workdir, 4) if x.dtype.kind == "f")


@pytest.mark.slow
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(finished, tmp_path):
  """A truncated file in the newest checkpoint; training resumes from step 4 and
  ends bit-identical to the uninterrupted run; with every checkpoint damaged, one clear error."""
  config, run = finished
  workdir = _copy(run, tmp_path / "damaged")
  victim = _largest_file(os.path.join(workdir, "checkpoints", "8"))
  with open(victim, "r+b") as f:
    f.truncate(os.path.getsize(victim) // 2)
  result = loop.train_and_evaluate(config, workdir)
  assert result["step"] == 8
  assert os.path.isdir(os.path.join(workdir, checkpoint.DAMAGED_DIR, "checkpoints_8"))
  _assert_same_state(_state(workdir, 8), _state(run, 8))
  for step in (4, 8):
    os.remove(_largest_file(os.path.join(workdir, "checkpoints", str(step))))
  with pytest.raises(InputError, match="No checkpoint in .* can be restored.*step 8.*step 4"):
    loop.train_and_evaluate(config, workdir)


def test_the_alignment_never_switches_from_a_damaged_best_checkpoint(finished, tmp_path):
  _, run = finished
  workdir = _copy(run, tmp_path / "damaged_best")
  best = features.checkpoint_step(workdir, "best")
  os.remove(_largest_file(os.path.join(workdir, "checkpoints", str(best))))
  with pytest.raises(InputError, match=rf"best checkpoint .* \(step {best}\) cannot be used.*"
                                       "does not switch to another step"):
    features.load_trained(workdir, "best")


def test_changed_settings_are_refused_before_anything_is_written(finished, tmp_path, fake_archive):
  """Seed, learning rate and epochs all differ; nothing in the workdir changes.
  Allowed with allow_config_change (and recorded); moving the data or an older config.json
  without the newer fields is harmless; other data is refused."""
  config, run = finished
  workdir = _copy(run, tmp_path / "changed")
  listing = lambda: {f: os.path.getmtime(os.path.join(workdir, f)) for f in os.listdir(workdir)
                     if f != workdir_lib.LOCK_FILE}  # the lock file holds the last pid
  before = listing()
  changed = config.copy_and_resolve_references()
  changed.update(dict(seed=7, learning_rate=0.01, num_epochs=3))
  with pytest.raises(InputError) as error:
    loop.train_and_evaluate(changed, workdir)
  for line in ("seed: 0 -> 7", "learning_rate: 0.001 -> 0.01", "num_epochs: 2 -> 3"):
    assert line in str(error.value)
  assert listing() == before

  moved = str(tmp_path / "moved_data")
  conftest.link_fake_archive(fake_archive, moved)
  saved = json.load(open(os.path.join(workdir, "config.json")))
  for field in ("checkpoint_every_steps", "allow_config_change"):
    del saved[field]
  del saved["task_kwargs"]["target_field"]
  json.dump(saved, open(os.path.join(workdir, "config.json"), "w"))
  same = config.copy_and_resolve_references()
  same.data_dir = moved
  assert loop.train_and_evaluate(same, workdir)["step"] == 8  # nothing left to train

  other = str(tmp_path / "other_data")
  conftest.write_fake_archive(other, seed=5)
  same.data_dir = other
  with pytest.raises(InputError, match=r"data \(identity"):
    loop.train_and_evaluate(same, workdir)

  longer = config.copy_and_resolve_references()
  longer.update(dict(num_epochs=3, allow_config_change=True))
  assert loop.train_and_evaluate(longer, workdir)["step"] == 12
  changes = json.load(open(os.path.join(workdir, "run.json")))["config_changes"]
  assert changes[-1]["changes"] == {"num_epochs": [2, 3]}


def _cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                        env=dict(os.environ, **(env or {})), check=False, timeout=600)


def _train_args(config, workdir: str) -> list[str]:
  return (["experiments.train_philnet", f"--workdir={workdir}",
           "--config=experiments/configs/philnet.py:smoke", f"--config.data_dir={config.data_dir}"]
          + [f"--config.{f}={config[f]}" for f in CLI_FIELDS])


def test_a_second_process_is_locked_out_until_the_first_dies(finished, tmp_path):
  """While one process holds the workdir, another stops with its pid; the lock
  goes with the holder, kill -9 included."""
  config, _ = finished
  workdir = str(tmp_path / "shared")
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from align_jax.runtime import workdir; "
       f"ctx = workdir.lock({workdir!r}); ctx.__enter__(); print('locked', flush=True); "
       "time.sleep(600)"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    second = _cli(_train_args(config, workdir))
    assert second.returncode != 0, second.stderr
    assert f"error: {os.path.realpath(workdir)} is in use by pid {holder.pid}" in second.stderr
    assert "Traceback" not in second.stderr
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with workdir_lib.lock(workdir):
    pass  # free again


def test_bad_data_writes_nothing(fake_archive, finished, tmp_path):
  """A test_batch.bin cut to 9,000 records stops training before its workdir
  exists; a damaged CIFAR-10H stops fine-tuning before any fold folder exists."""
  source, arrays = fake_archive
  short = tmp_path / "short"
  conftest.link_fake_archive(fake_archive, str(short))
  test_file = short / "cifar-10-batches-bin" / "test_batch.bin"
  test_file.unlink()
  with open(os.path.join(source, "cifar-10-batches-bin", "test_batch.bin"), "rb") as f:
    test_file.write_bytes(f.read(9_000 * 3073))
  config = _tiny_config(str(short))
  with pytest.raises(InputError, match=r"test_batch.bin.*\(9,000 records\)"):
    loop.train_and_evaluate(config, str(tmp_path / "never"))
  assert not os.path.exists(tmp_path / "never")

  broken = tmp_path / "broken_cifar10h"
  conftest.link_fake_archive(fake_archive, str(broken))
  counts = conftest.write_fake_cifar10h(str(broken), arrays[3])
  probs = counts / counts.sum(1, keepdims=True)
  probs[5, 3] = np.nan
  np.save(broken / "cifar10h" / "cifar10h-probs.npy", probs)
  ft = finetune_cifar10h.get_config("quick")
  ft.update(dict(init_from=finished[1], data_dir=str(broken), test_subset=120, num_folds=2))
  with pytest.raises(InputError, match="cifar10h-probs.npy has negative or non-finite"):
    finetune.finetune_cifar10h(ft, str(tmp_path / "ft"))
  assert not os.path.exists(tmp_path / "ft")


def test_user_errors_end_in_one_error_line(finished, tmp_path, monkeypatch):
  """A workdir path through a regular file, a typo'd field, an unwritable workdir;
  a documented nested override (task_kwargs.target_field) parses."""
  config, _ = finished
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  through_file = _cli(_train_args(config, str(blocker / "run")))
  typo = _cli(["experiments.train_philnet", f"--workdir={tmp_path}", "--config.num_epoch=3"])
  nested = _cli(["experiments.train_philnet", f"--workdir={tmp_path / 'n'}",
                 "--config.task_kwargs.target_field=human_probs", "--config.num_epochs=0",
                 f"--config.data_dir={config.data_dir}"])
  for proc, message in ((through_file, f"{blocker} is a file, not a directory"),
                        (typo, "--config.num_epoch is not a field of"),
                        (nested, "num_epochs=0 must be > 0")):
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
  assert "did you mean num_epochs" in typo.stderr
  monkeypatch.setattr(workdir_lib.os, "access", lambda *a: False)
  with pytest.raises(InputError, match="is not writable"):
    workdir_lib.prepare(str(tmp_path / "readonly"))


@pytest.mark.slow
def test_a_failed_save_stops_cleanly_and_keeps_the_previous_checkpoint(finished, tmp_path,
                                                                      monkeypatch):
  """A full disk (ENOSPC) while saving step 12 of an extended run: a clear error; step 8 is
  intact and restorable, and a rerun finishes."""
  config, run = finished
  workdir = _copy(run, tmp_path / "full_disk")
  longer = config.copy_and_resolve_references()
  longer.update(dict(num_epochs=3, allow_config_change=True))
  original = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == 12:
      raise OSError(errno.ENOSPC, "No space left on device")
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save)
  with pytest.raises(checkpoint.CheckpointError,
                     match="step 12 .* failed .*No space left.*resumes from the checkpoint of step 8"):
    loop.train_and_evaluate(longer, workdir)
  monkeypatch.setattr(ocp.CheckpointManager, "save", original)
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))
                if s.isdigit()) == [4, 8]
  _assert_same_state(_state(workdir, 8), _state(run, 8))
  assert loop.train_and_evaluate(longer, workdir)["step"] == 12


def _crash_and_resume(config, workdir: str, point: str) -> None:
  crashed = _cli(["tests.crash_points", *_train_args(config, workdir)],
                 env={crash_points.ENV: point})
  assert crashed.returncode == crash_points.EXIT_CODE, crashed.stderr[-2000:]
  resumed = _cli(_train_args(config, workdir))
  assert resumed.returncode == 0, resumed.stderr[-2000:]


@pytest.mark.slow  # one point of the kill matrix below
def test_a_kill_during_a_save_resumes_bit_identically(finished, tmp_path):
  """Killed after orbax wrote step 4's temporary folder but before renaming it."""
  config, run = finished
  workdir = str(tmp_path / "killed")
  _crash_and_resume(config, workdir, "during_save:4")
  _assert_same_state(_state(workdir, 8), _state(run, 8))


@pytest.mark.slow
@pytest.mark.parametrize("point,every", [("after_step:2", 0), ("after_step:7", 3),
                                         ("after_save:4", 0), ("during_save:8", 0),
                                         ("after_save:8", 0)])
def test_kill_matrix_resumes_bit_identically(finished, tmp_path, point, every):
  """kill -9 before the first checkpoint, mid-epoch (with a mid-epoch checkpoint at step 6),
  after a save, during the last save and after the last: the final state never changes."""
  config, run = finished
  config = config.copy_and_resolve_references()
  config.checkpoint_every_steps = every
  workdir = str(tmp_path / "killed")
  _crash_and_resume(config, workdir, point)
  _assert_same_state(_state(workdir, 8), _state(run, 8))
  if every:
    assert features.checkpoint_step(workdir, "best") in (4, 8)  # never a mid-epoch step
    assert not checkpoint.has_checkpoints(workdir) or not os.listdir(
        os.path.join(workdir, checkpoint.MID_EPOCH_DIR))
