"""The command lines as README documents them: flag order, --help, early config checks, the
closing line."""

import os
import subprocess
import sys
import time

import pytest

from align_jax.models import MODELS
from align_jax.pipeline import finetune
from align_jax.runtime import names
from align_jax.training import tasks
from experiments import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# entry point -> (its config file, an override its config check refuses, the message)
ENTRY_POINTS = {
    "train_philnet": ("philnet.py:smoke", "num_epochs=0", "num_epochs=0 must be > 0"),
    "train_resnet": ("resnet50.py:smoke", "batch_size=0", "batch_size=0 must be > 0"),
    "train_vae": ("vae.py:smoke", "learning_rate=-1", "learning_rate=-1.0 must be > 0"),
    "align": ("align.py:quick", "metric=manhattan", "metric='manhattan' must be one of"),
    "finetune_cifar10h": ("finetune_cifar10h.py:quick", "num_folds=1", "num_folds=1 must be >= 2"),
    "run_study": ("study.py:quick", "num_seeds=0", "num_seeds=0 must be >= 1"),
}


def _run(entry: str, args: list[str]) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", f"experiments.{entry}", *args], cwd=ROOT,
                        capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_config_and_overrides_work_in_either_order_and_bad_values_fail_fast(entry, tmp_path):
  config, override, message = ENTRY_POINTS[entry]
  flags = [f"--config=experiments/configs/{config}", f"--config.{override}"]
  for order in (flags, ["--noretain_freed_memory", *flags[::-1]]):
    start = time.perf_counter()
    proc = _run(entry, [f"--workdir={tmp_path}/w", *order])
    assert proc.returncode != 0 and message in proc.stderr, (order, proc.stderr)
    assert "Traceback" not in proc.stderr and "Flags parsing error" not in proc.stderr
    assert time.perf_counter() - start < 20  # before JAX, TensorFlow or any data loads
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_help_exits_0_and_explains_every_top_level_field(entry):
  proc = _run(entry, ["--help"])
  assert proc.returncode == 0, proc.stderr
  fields = proc.stdout.split("(default): meaning:")[1].strip().splitlines()
  assert fields and all("see README" not in line and "): " in line for line in fields), fields
  assert "--workdir=DIR" in proc.stdout and "python -m experiments." in proc.stdout
  assert "--noretain_freed_memory" in proc.stdout
  usage = [line.strip() for line in proc.stdout.split("Flags:")[0].splitlines()]
  assert not [line for line in usage if "   " in line], usage  # no line break lost to spaces


@pytest.mark.parametrize("flag", ["-h", "--helpshort", "--helpfull", "--help=true",
                                  "--helpfull=1"])
def test_every_help_flag_exits_0(flag):
  proc = _run("train_philnet", [flag])
  assert proc.returncode == 0 and "(default): meaning:" in proc.stdout, proc.stderr


def test_help_with_other_flags_and_for_align_exits_0():
  for module, args in (("align", ["--help"]), ("align", ["--workdir=W", "--help"]),
                       ("train_philnet", ["--help", "--config.sed=3"])):
    proc = _run(module, args)
    assert proc.returncode == 0 and "(default): meaning:" in proc.stdout, (module, proc.stderr)
  assert not cli.asks_for_help(["--help=false", "--nohelp"])


def test_argv_is_reordered_and_checked_before_parsing(tmp_path):
  default = os.path.join(cli.CONFIG_DIR, "philnet.py")
  argv = ["prog", "--config.seed=3", f"--config={default}:smoke", "--workdir=W"]
  assert cli.prepare_argv(argv, default) == [
      "prog", f"--config={default}:smoke", "--config.seed=3", "--workdir=W"]
  with pytest.raises(SystemExit, match="did you mean seed"):
    cli.prepare_argv(["prog", "--config.sed=3"], default)
  with pytest.raises(SystemExit, match="no such file"):
    cli.prepare_argv(["prog", f"--config={tmp_path}/none.py"], default)


def test_the_closing_line_names_the_report_and_results_by_full_path():
  results = {"rsa": [{}] * 4, "models": {"a": {}}, "n_images": 1000}
  text = cli.alignment_summary(results, "/data/out")
  assert "report:  /data/out/report.md" in text and "results: /data/out/results.json" in text


def test_light_name_lists_match_what_is_implemented():
  assert names.MODELS == tuple(MODELS) and names.TASKS == tuple(tasks.TASKS)
  assert names.FINETUNE_TARGETS == tuple(finetune.TARGETS)


@pytest.mark.parametrize("args,status", [(["--help"], 0), (["--workdir=w"], 1)])
def test_without_the_dependencies_entry_points_say_how_to_install(args, status):
  """As in a Python where the project is not installed: absl cannot be imported."""
  code = ("import runpy, sys; sys.modules['absl'] = None; "
          "runpy.run_module('experiments.train_philnet', run_name='__main__', alter_sys=True)")
  proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert proc.returncode == status, proc.stderr
  assert "Traceback" not in proc.stderr
  assert "pip install -e ." in proc.stdout + proc.stderr
  if status == 0:
    assert "python -m experiments.train_philnet --workdir=W" in proc.stdout
