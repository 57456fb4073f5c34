"""Clusters simulated on this machine: SLURM's environment variables for both layouts (one task
per node with all its devices, one task per device), the refusal when a process sees fewer
devices than SLURM allocated, and multi-process endings when process 0's own work outlasts
JAX's shutdown timeout."""

import os

import numpy as np
import pytest

from align_jax.errors import InputError
from align_jax.runtime import multihost
from tests import conftest
from tests.test_multihost import TINY, _finish, _free_port, _launch, _logs, _two_processes


def _slurm(proc_id: int, local_id: int, node_id: int, ntasks: int, tasks_per_node: int,
           gpus_on_node: int, devices: int, port: int) -> dict:
  """The environment srun gives a task (as SLURM sets it), on this machine's CPU devices."""
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
              SLURM_JOB_ID="4242", SLURM_STEP_NODELIST="localhost", SLURM_NTASKS=str(ntasks),
              SLURM_PROCID=str(proc_id), SLURM_LOCALID=str(local_id), SLURM_NODEID=str(node_id),
              SLURM_NTASKS_PER_NODE=str(tasks_per_node), SLURM_GPUS_ON_NODE=str(gpus_on_node),
              JAX_COORDINATOR_PORT=str(port))


@pytest.mark.parametrize("env,expected", [
    ({}, None),  # not under SLURM
    ({"SLURM_LOCALID": "0", "SLURM_NTASKS_PER_NODE": "1"}, None),  # no GPUs allocated
    # one task per node, all 4 GPUs of the node visible: all of them (JAX alone would take [0])
    ({"SLURM_LOCALID": "0", "SLURM_NTASKS_PER_NODE": "1", "SLURM_GPUS_ON_NODE": "4"},
     [0, 1, 2, 3]),
    # one task per GPU, every task sees the node's 4: its own
    ({"SLURM_LOCALID": "2", "SLURM_NTASKS_PER_NODE": "4", "SLURM_GPUS_ON_NODE": "4"}, [2]),
    # one task per GPU with --gpus-per-task: each sees only its own, as ordinal 0
    ({"SLURM_LOCALID": "2", "SLURM_NTASKS_PER_NODE": "4", "SLURM_GPUS_ON_NODE": "4",
      "CUDA_VISIBLE_DEVICES": "2"}, [0]),
    # two tasks of two GPUs each; the node's task count from SLURM_TASKS_PER_NODE
    ({"SLURM_LOCALID": "1", "SLURM_TASKS_PER_NODE": "2(x2)", "SLURM_NODEID": "1",
      "SLURM_STEP_GPUS": "0,1,2,3"}, [2, 3]),
])
def test_slurm_device_ids_take_every_gpu_of_the_tasks_share(env, expected):
  assert multihost.slurm_device_ids(env) == expected


def test_a_process_that_sees_fewer_gpus_than_its_share_is_told_how_to_fix_it():
  with pytest.raises(InputError, match=r"sees 1 GPU\(s\) .* 4 for 1 task\(s\), 4 each.*"
                                       r"--gpus-per-task.*--local_device_ids"):
    multihost.slurm_device_ids({"SLURM_LOCALID": "0", "SLURM_NTASKS_PER_NODE": "1",
                                "SLURM_GPUS_ON_NODE": "4", "CUDA_VISIBLE_DEVICES": "0"})
  with pytest.raises(InputError, match="does not divide"):
    multihost.slurm_device_ids({"SLURM_LOCALID": "0", "SLURM_NTASKS_PER_NODE": "3",
                                "SLURM_GPUS_ON_NODE": "4"})


def test_a_run_on_fewer_devices_than_slurm_allocated_stops(tmp_path, fake_data_dir):
  """SLURM gave the node 2 devices for its 1 task, the process has 1: it refuses at start."""
  env = _slurm(0, 0, 0, 1, 1, gpus_on_node=2, devices=1, port=_free_port())
  [(code, out)] = _finish([_launch("experiments.train_philnet", [
      "--distributed", f"--workdir={tmp_path}/w", f"--config.data_dir={fake_data_dir}", *TINY],
      env)])
  assert code == 1 and "Traceback" not in out, out[-3000:]
  assert "error: This process has 1 local device(s) but SLURM allocated 2 to it" in out


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["one task per node", "one task per GPU"])
def test_both_slurm_layouts_use_every_device(layout, tmp_path, fake_data_dir):
  port = _free_port()
  if layout == "one task per node":  # 2 nodes, 1 task each, 2 devices each
    envs = [_slurm(i, 0, i, 2, 1, gpus_on_node=2, devices=2, port=port) for i in range(2)]
    line = "Devices: 2 process(es) x 2 local device(s) = 4 device(s) (cpu)."
  else:  # 1 node, 2 tasks, 1 device each
    envs = [_slurm(i, i, 0, 2, 2, gpus_on_node=2, devices=1, port=port) for i in range(2)]
    line = "Devices: 2 process(es) x 1 local device(s) = 2 device(s) (cpu)."
  results = _finish([_launch("experiments.train_philnet", [
      "--distributed", f"--workdir={tmp_path}/w", f"--config.data_dir={fake_data_dir}", *TINY],
      env) for env in envs])
  assert all(code == 0 for code, _ in results), _logs(results)
  assert all(line in out for _, out in results), _logs(results)


def test_process_0s_long_alignment_outlasts_the_shutdown_timeout(tmp_path, fake_archive):
  """Process 1 has nothing to align; it waits for process 0 (whose alignment takes longer than
  the 2 s shutdown timeout set here) and both end with exit 0."""
  root = str(tmp_path)
  labels = conftest.link_fake_archive(fake_archive, root)
  human = conftest.write_fake_cifar10h(root, labels)
  model = os.path.join(root, "model.npz")
  np.savez(model, logits=np.log(human + 1.0) + np.random.default_rng(0).standard_normal(
      human.shape))
  results = _two_processes("experiments.align", [
      f"--workdir={root}/out", f"--config.models=m={model}", f"--config.data_dir={root}",
      "--config=experiments/configs/align.py:quick", "--config.num_images=120",
      "--config.n_bootstrap=20", "--config.n_permutations=20", "--config.n_ceiling_splits=2",
      "--config.figure_images=20", "--config.n_kappa_resamples=10", "--config.cache_dir="],
      {multihost.SHUTDOWN_TIMEOUT_ENV: "2"})
  assert [code for code, _ in results] == [0, 0], _logs(results)
  assert "process 1's part" in results[1][1] and "report:" in results[0][1]


def test_bad_local_device_ids_are_explained(tmp_path, fake_data_dir):
  [(code, out)] = _finish([_launch("experiments.train_philnet", [
      "--local_device_ids=0,x", f"--workdir={tmp_path}/w", f"--config.data_dir={fake_data_dir}",
      *TINY], dict(os.environ))])
  assert code == 1 and "Traceback" not in out
  assert "error: --local_device_ids=0,x must be device ordinals, e.g. 0,1,2,3." in out
  assert not os.path.exists(tmp_path / "w")


def test_a_compilation_cache_path_through_a_file_is_explained(tmp_path, fake_data_dir):
  (tmp_path / "file").write_text("")
  [(code, out)] = _finish([_launch("experiments.train_philnet", [
      f"--compilation_cache_dir={tmp_path}/file", f"--workdir={tmp_path}/w",
      f"--config.data_dir={fake_data_dir}", *TINY], dict(os.environ))])
  assert code == 1 and "Traceback" not in out
  assert f"error: --compilation_cache_dir={tmp_path}/file is a file" in out
  assert not os.path.exists(tmp_path / "w")
