"""The shared absl main of every entry point: --workdir, --config -> one library function."""

import importlib
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def run(config_module, entry: str, describe) -> None:
  """Defines --workdir, --config (+ --config.x=y overrides), --distributed, then calls
  `entry` ('package.module:function', imported after flags parse so --help stays fast) with
  (config, workdir) and prints describe(result)."""
  flags.DEFINE_string("workdir", None, "Output directory; rerunning with the same workdir "
                      "resumes or skips finished work.")
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first (multi-host; "
                    "auto-detects SLURM, Open MPI, Cloud TPU).")
  default = os.path.join(CONFIG_DIR, os.path.basename(config_module.__file__))
  fields = ", ".join(sorted(config_module.get_config().keys()))
  config_flags.DEFINE_config_file(
      "config", default, "Config file, optionally with ':variant' (see its docstring). Override "
      f"any field with --config.FIELD=VALUE; fields: {fields} (README explains each).",
      lock_config=True)
  flags.mark_flags_as_required(["workdir"])
  for name in ("workdir", "config", "distributed"):  # list them under --help, not only --helpfull
    flags.FLAGS.register_flag_by_module(sys.argv[0], flags.FLAGS[name])
  app.run(lambda argv: _main(argv, entry, describe))


def _main(argv, entry: str, describe) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  from align_jax.data import tf_cpu  # pylint: disable=g-import-not-at-top
  tf_cpu.hide_gpus_from_tensorflow()
  import jax  # pylint: disable=g-import-not-at-top
  from align_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  module, function = entry.split(":")
  if flags.FLAGS.distributed:
    jax.distributed.initialize()
  try:
    result = getattr(importlib.import_module(module), function)(flags.FLAGS.config,
                                                                flags.FLAGS.workdir)
  except (InputError, FloatingPointError) as e:
    sys.exit(f"error: {e}")
  print(describe(result))


def training_summary(result: dict) -> str:
  """What the train_* entry points print when a run ends."""
  return (f"done: step {result['step']}, validation {result['validation']}, "
          f"test {result['test']}, best checkpoint step {result['best_step']}")
