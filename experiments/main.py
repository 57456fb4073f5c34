"""The shared absl main of every entry point: --workdir, --config -> one library function.

Every failure a user can fix ends in one `error:` line; the command line is prepared before
absl parses it (experiments/cli.py).
"""

import os
import sys

from experiments import cli

try:
  from absl import app, flags, logging
  from ml_collections import config_flags
except ModuleNotFoundError as missing:
  cli.explain_missing_dependency(missing)
OWN_FLAGS = ("workdir", "config", "distributed", "coordinator_address", "num_processes",
             "process_id", "local_device_ids", "retain_freed_memory", "compilation_cache_dir")


def run(config_module, entry, describe, check) -> None:
  """Checks the config with check(config) before anything heavy is imported, then prints
  describe(entry(config, workdir), workdir)."""
  if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO and warnings
  flags.DEFINE_string("workdir", None, "Output directory; rerunning resumes or skips work.")
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first.")
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (implies "
                      "--distributed; else auto-detected).")
  flags.DEFINE_integer("num_processes", None, "How many processes (implies --distributed).")
  flags.DEFINE_integer("process_id", None, "This process's index (implies --distributed).")
  flags.DEFINE_bool("retain_freed_memory", True, "Keep freed host memory for reuse (CPUs).")
  flags.DEFINE_list("local_device_ids", None, "This process's devices (GPU ordinals), e.g. 0,1; "
                    "default: every GPU SLURM gave the task.")
  flags.DEFINE_string("compilation_cache_dir", None, "Persistent compilation cache ('' = off); "
                      "default $JAX_COMPILATION_CACHE_DIR or ~/.cache/align_jax/...")
  default = os.path.join(cli.CONFIG_DIR, os.path.basename(config_module.__file__))
  sys.argv = cli.prepare_argv(sys.argv, default)  # config_flags reads sys.argv while defining
  if cli.asks_for_help(sys.argv[1:]):
    spec = next((a.split("=", 1)[1] for a in sys.argv[1:2] if a.startswith("--config=")), default)
    print(cli.help_text(sys.modules["__main__"].__doc__ or "", spec))
    if cli.asks_for_help([a for a in sys.argv[1:] if a.startswith("--helpfull")]):
      print("\nEvery flag, absl's included:\n" + flags.FLAGS.get_help())  # absl's exits 1
    sys.exit(0)
  config_flags.DEFINE_config_file("config", default, "Config file[:variant]; --help lists "
                                  "its fields.", lock_config=True)
  flags.mark_flags_as_required(["workdir"])
  for name in OWN_FLAGS:  # listed under --help, not --helpfull only
    flags.FLAGS.register_flag_by_module(sys.argv[0], flags.FLAGS[name])
  app.run(lambda argv: _main(argv, entry, describe, check))


def _main(argv, entry, describe, check) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(max(flags.FLAGS.verbosity, logging.INFO))
  if flags.FLAGS.verbosity < 1:
    logging.get_absl_handler().addFilter(cli.OwnInfoOnly())
  from align_jax.errors import InputError  # pylint: disable=g-import-not-at-top  (light)
  from align_jax.runtime import session  # pylint: disable=g-import-not-at-top  (light)
  f = flags.FLAGS
  try:
    check(f.config)
  except InputError as e:
    sys.exit(f"error: {e}")
  if f.local_device_ids is not None and not all(i.isdigit() for i in f.local_device_ids):
    sys.exit(f"error: --local_device_ids={','.join(f.local_device_ids)} must be device "
             "ordinals, e.g. 0,1,2,3.")
  ids = None if f.local_device_ids is None else [int(i) for i in f.local_device_ids]
  explicit = (f.coordinator_address, f.num_processes, f.process_id)
  cache = session.default_compilation_cache() if f.compilation_cache_dir is None else (
      f.compilation_cache_dir)
  if cache and os.path.isfile(os.path.expanduser(cache)):
    sys.exit(f"error: --compilation_cache_dir={cache} is a file: give a directory, or "
             "--compilation_cache_dir= to keep no compilation cache.")
  from align_jax.runtime import multihost  # pylint: disable=g-import-not-at-top
  from align_jax.training.checkpoint import CheckpointError  # pylint: disable=g-import-not-at-top
  succeeded = False
  try:
    session.start(retain_freed_memory=f.retain_freed_memory, compilation_cache_dir=cache,
                  distributed=f.distributed or any(v is not None for v in explicit)
                  or ids is not None, coordinator_address=explicit[0],
                  num_processes=explicit[1], process_id=explicit[2], local_device_ids=ids)
    result = entry(f.config, f.workdir)
    succeeded = True
  except (InputError, FloatingPointError, CheckpointError) as e:
    sys.exit(f"error: {e}")
  except OSError as e:  # permissions, full disks, paths through files: the OS says what
    sys.exit(f"error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
  finally:
    _finish_together(succeeded, multihost, InputError)
  if result is None:  # a multi-host process whose part ended (process 0 writes the outputs)
    print(f"done: process {multihost.jax.process_index()}'s part; process 0 writes the outputs.")
    return
  print(describe(result, os.path.abspath(flags.FLAGS.workdir)))


def _finish_together(succeeded: bool, multihost, input_error) -> None:
  """In a multi-process run, the other processes wait for process 0's own work to end."""
  if multihost.jax.distributed.is_initialized():
    try:
      multihost.finish(succeeded)
    except input_error as e:
      sys.exit(f"error: {e}")


def train(config, workdir: str) -> dict:
  """The train_* entry points' work (the training engine is imported only once the config
  has passed its checks)."""
  from align_jax.training import loop  # pylint: disable=g-import-not-at-top
  return loop.train_and_evaluate(config, workdir)
