"""Multi-host for real: two processes on this machine (gloo collectives over localhost), against
one process with two devices on the same global batch."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from align_jax.runtime import workdir as workdir_lib
from tests import conftest, crash_points

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config=experiments/configs/philnet.py:smoke", "--config.num_validation=60",
        "--config.train_subset=240", "--config.test_subset=60", "--config.batch_size=60",
        "--config.eval_batch_size=60", "--config.num_epochs=2", "--config.log_every_steps=2",
        "--config.checkpoint_every_steps=0"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int, extra: dict | None = None) -> dict:
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **(extra or {}))


def _launch(module: str, args: list[str], env: dict) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(procs: list[subprocess.Popen], timeout: int = 300) -> list[tuple[int, str]]:
  """(exit code, output) of each process; a hung one is killed and reported as -9."""
  results = []
  for proc in procs:
    try:
      out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      proc.kill()
      out, _ = proc.communicate()
    results.append((proc.returncode, out))
  return results


def _two_processes(module: str, args: list[str], env_extra: dict | None = None):
  port = _free_port()
  procs = [_launch(module, [*args, f"--coordinator_address=127.0.0.1:{port}",
                            "--num_processes=2", f"--process_id={i}"], _env(1, env_extra))
           for i in range(2)]
  return _finish(procs)


def _logs(results) -> str:
  return "\n".join(f"--- process {i} (exit {code}) ---\n{out[-3000:]}"
                   for i, (code, out) in enumerate(results))


def _state(workdir: str, step: int) -> list[np.ndarray]:
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  restored = manager.restore(step, args=ocp.args.StandardRestore())
  manager.close()
  return [np.asarray(x) for x in jax.tree.leaves(restored)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fake_archive):
  """(data dir, workdir) of the tiny PhilNet run by one process with two devices."""
  root = str(tmp_path_factory.mktemp("multihost"))
  conftest.link_fake_archive(fake_archive, root)
  [(code, out)] = _finish([_launch("experiments.train_philnet",
                                   [f"--workdir={root}/one", f"--config.data_dir={root}", *TINY],
                                   _env(2))])
  assert code == 0, out[-3000:]
  return root, f"{root}/one"


@pytest.mark.slow  # two training subprocesses and the reference run (~1.5 min)
def test_two_processes_train_exactly_like_one_process_with_two_devices(reference, tmp_path):
  data_dir, one = reference
  two = str(tmp_path / "two")
  results = _two_processes("experiments.train_philnet",
                           [f"--workdir={two}", f"--config.data_dir={data_dir}", *TINY])
  assert all(code == 0 for code, _ in results), _logs(results)
  for a, b in zip(_state(one, 8), _state(two, 8)):
    np.testing.assert_array_equal(a, b)  # the same sums, whichever process adds them
  assert len([f for f in os.listdir(two) if f.startswith("events.out")]) == 1  # process 0's
  assert json.load(open(f"{two}/config.json"))["model"] == "philnet"


def test_a_refusal_on_process_0_stops_every_process(fake_data_dir, tmp_path):
  """Process 0 cannot take the workdir's lock: both processes stop with a message, neither
  waits for the other in a collective."""
  data_dir = fake_data_dir
  busy = str(tmp_path / "busy")
  with workdir_lib.lock(busy):
    results = _two_processes("experiments.train_philnet",
                             [f"--workdir={busy}", f"--config.data_dir={data_dir}", *TINY])
  (code0, out0), (code1, out1) = results
  assert code0 not in (0, -9) and code1 not in (0, -9), _logs(results)
  assert f"is in use by pid {os.getpid()}" in out0 and "process 0 stopped the run" in out1


@pytest.mark.slow
def test_both_processes_killed_resume_to_the_same_result(reference, tmp_path):
  data_dir, one = reference
  two = str(tmp_path / "killed")
  args = [f"--workdir={two}", f"--config.data_dir={data_dir}", *TINY]
  crashed = _two_processes("tests.crash_points", ["experiments.train_philnet", *args],
                           {crash_points.ENV: "after_step:6"})
  assert all(code == crash_points.EXIT_CODE for code, _ in crashed), _logs(crashed)
  resumed = _two_processes("experiments.train_philnet", args)
  assert all(code == 0 for code, _ in resumed), _logs(resumed)
  assert all("Resuming from the checkpoint of step 4" in out for _, out in resumed)
  for a, b in zip(_state(one, 8), _state(two, 8)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_the_alignment_under_two_processes_equals_one_process(reference, tmp_path):
  """Process 0 aligns, process 1 ends at once; results.json is the one-process result."""
  data_dir, one = reference
  conftest.write_fake_cifar10h(data_dir, np.fromfile(
      os.path.join(data_dir, "cifar-10-batches-bin", "test_batch.bin"),
      np.uint8).reshape(-1, 3073)[:, 0])
  args = [f"--config.models=philnet={one}", f"--config.data_dir={data_dir}",
          "--config=experiments/configs/align.py:quick", "--config.num_images=100",
          "--config.n_bootstrap=5", "--config.n_permutations=5", "--config.n_ceiling_splits=2",
          "--config.figure_images=20", "--config.n_kappa_resamples=10"]
  [(code, out)] = _finish([_launch("experiments.align", [f"--workdir={tmp_path}/single", *args],
                                   _env(1))])
  assert code == 0, out[-3000:]
  results = _two_processes("experiments.align", [f"--workdir={tmp_path}/double", *args])
  assert all(code == 0 for code, _ in results), _logs(results)
  assert "process 1's part" in results[1][1]
  single, double = (json.load(open(f"{tmp_path}/{d}/results.json")) for d in ("single", "double"))
  for key in ("rsa", "noise_ceiling", "behaviour", "class_rsa", "cka", "statistics"):
    assert single[key] == double[key], key
