"""The shared absl main of the train_* entry points: flags -> train_and_evaluate()."""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.configs import common

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def run(default_config: str) -> None:
  """Defines --workdir, --config (+ --config.x=y overrides), --distributed; runs training."""
  flags.DEFINE_string("workdir", None, "Directory for config.json, checkpoints and TensorBoard "
                      "events; rerunning with the same workdir resumes.")
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first (multi-host; "
                    "auto-detects SLURM, Open MPI, Cloud TPU).")
  fields = ", ".join(sorted(common.training_config().keys()))
  config_flags.DEFINE_config_file(
      "config", os.path.join(CONFIG_DIR, default_config),
      "Config file, optionally with ':variant' (e.g. ':smoke'). Override any field with "
      f"--config.FIELD=VALUE; fields: {fields} (README explains each).", lock_config=True)
  flags.mark_flags_as_required(["workdir"])
  for name in ("workdir", "config", "distributed"):  # list them under --help, not only --helpfull
    flags.FLAGS.register_flag_by_module(sys.argv[0], flags.FLAGS[name])
  app.run(_main)


def _main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  from align_jax.data import tf_cpu  # pylint: disable=g-import-not-at-top
  tf_cpu.hide_gpus_from_tensorflow()
  import jax  # pylint: disable=g-import-not-at-top
  from align_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  from align_jax.training.loop import train_and_evaluate  # pylint: disable=g-import-not-at-top
  if flags.FLAGS.distributed:
    jax.distributed.initialize()
  try:
    result = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
  except (InputError, FloatingPointError) as e:
    sys.exit(f"error: {e}")
  print(f"done: step {result['step']}, validation {result['validation']}, "
        f"test {result['test']}, best checkpoint step {result['best_step']}")
