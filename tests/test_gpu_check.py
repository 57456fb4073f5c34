"""benchmarks/gpu_check.sh in its CPU smoke mode: every check of the GPU verification runs
(two forced host devices stand in for GPUs) and passes, and a failing check fails the script."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, data_dir, *extra_env):
  env = dict(os.environ, GPU_CHECK_SMOKE="1", ALIGN_JAX_DATA_DIR=data_dir,
             OUT=str(tmp_path / "out"),
             PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
  env.update(extra_env)
  return subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.slow
def test_the_gpu_check_smoke_mode_runs_every_check(offline_data_dir, tmp_path):
  """On the offline data (the fake archive's random images have nothing for the loss to
  learn in a few steps, so the bfloat16 check could not tell training from noise there)."""
  run = _run(tmp_path, offline_data_dir)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  results = json.load(open(tmp_path / "out" / "results.json"))
  assert [r["check"] for r in results] == ["backend", "devices", "bfloat16", "fast", "rsa",
                                           "rsa_50k"]
  assert all(r["result"] == "pass" for r in results), results
  assert "| check | result | detail | s |" in run.stdout
  assert "1 vs 2 devices" in run.stdout


def test_a_failed_check_fails_the_script(tmp_path):
  """No data directory: the train checks fail, the table says so and the exit status is 1."""
  empty = tmp_path / "empty"
  (empty / "cifar-10-batches-bin").mkdir(parents=True)
  env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
  run = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--smoke",
                        f"--data_dir={empty}", f"--out={tmp_path / 'out'}",
                        f"--work={tmp_path / 'work'}", "--only=backend,devices"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                       check=False)
  assert run.returncode == 1, run.stdout + run.stderr
  assert "| backend | pass |" in run.stdout and "| devices | FAIL |" in run.stdout
