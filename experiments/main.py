"""The shared absl main of every entry point: --workdir, --config -> one library function.

Before absl parses anything, the command line is prepared: `--config=FILE[:variant]` moves
ahead of the `--config.FIELD=VALUE` overrides (absl needs it first; users write it anywhere),
and every override is checked against the config's fields, so a typo is one `error:` line with
a suggestion instead of a traceback. Every failure a user can fix ends in one `error:` line.
"""

import difflib
import importlib
import importlib.util
import os
import re
import logging as std_logging
import sys

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
CONFIG_FLAG = "--config"
HELP_FLAGS = ("--help", "-h", "--helpshort", "-?", "--helpfull")
TRUE_VALUES = ("", "true", "t", "1", "yes", "y")  # absl's spellings of a true boolean flag


def asks_for_help(args: list[str]) -> bool:
  """Whether `args` ask for help: a help flag alone or as --help=true (absl's boolean form)."""
  for arg in args:
    name, _, value = arg.partition("=")
    if name in HELP_FLAGS and value.lower() in TRUE_VALUES:
      return True
  return False


def _explain_missing_dependency(error: ModuleNotFoundError) -> None:
  """Where the project is not installed in this Python: the entry point's usage (for --help,
  exit 0) or an `error:` line (exit 1), each saying how to install, instead of a traceback."""
  install = (f"align_jax's dependencies are not installed in this Python ({sys.executable}: "
             f"no module named {error.name!r}); from the repository root: python3 -m venv .venv "
             f"&& . .venv/bin/activate && pip install -e . (README, Quick start)")
  if asks_for_help(sys.argv[1:]):
    usage = (getattr(sys.modules.get("__main__"), "__doc__", None) or "").strip()
    print(f"{usage}\n\nThe full list of flags and config fields needs the dependencies:\n"
          f"{install}")
    sys.exit(0)
  sys.exit(f"error: {install}")


try:
  from absl import app, flags, logging
  from ml_collections import config_flags
except ModuleNotFoundError as missing:
  _explain_missing_dependency(missing)
OWN_PACKAGES = ("align_jax", "experiments")
# Warnings orbax gives for every checkpoint opened read-only, as the alignment does by design.
BENIGN_WARNINGS = ("CheckpointManagerOptions.read_only=True", "Given directory is read only")
ASSIGNMENT = re.compile(r"^\s*config\.(\w+)\s*=\s*[^#]*?(?:#\s*(.*))?$")


def _load_config(spec: str):
  """get_config(variant) of config file `spec` ('path[:variant]'), as config_flags does."""
  path, _, variant = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_align_jax_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    return module.get_config(variant or None)
  except ValueError as e:  # an unknown variant
    sys.exit(f"error: --config={spec}: {e}")


def field_names(config, prefix: str = "") -> list[str]:
  """Dotted names of every field of a ConfigDict, nested ones included."""
  names = []
  for key, value in config.items():
    names.append(prefix + key)
    if hasattr(value, "items"):
      names += field_names(value, f"{prefix}{key}.")
  return names


def prepare_argv(argv: list[str], default_config: str) -> list[str]:
  """argv with `--config=...` first among the flags and every `--config.FIELD` checked."""
  config_args = [a for a in argv[1:] if a == CONFIG_FLAG or a.startswith(CONFIG_FLAG + "=")]
  if any(a == CONFIG_FLAG for a in config_args):
    sys.exit("error: write --config=FILE[:variant] with '='.")
  rest = [a for a in argv[1:] if a not in config_args]
  spec = config_args[-1].split("=", 1)[1] if config_args else default_config
  if not os.path.isfile(spec.partition(":")[0]):
    sys.exit(f"error: --config={spec}: no such file (relative paths start in the current "
             f"directory, {os.getcwd()}; the configs live in {CONFIG_DIR}).")
  overrides = [a[len(CONFIG_FLAG) + 1:].split("=", 1)[0] for a in rest
               if a.startswith(CONFIG_FLAG + ".")]
  if overrides and not asks_for_help(rest):
    fields = field_names(_load_config(spec))
    for name in overrides:
      if name not in fields:
        close = difflib.get_close_matches(name, fields, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        sys.exit(f"error: --config.{name} is not a field of {spec}{hint}; --help lists the "
                 "fields.")
  return argv[:1] + config_args[-1:] + rest


def field_meanings(paths: list[str]) -> dict[str, str]:
  """Top-level field -> meaning, from the config files' comments: the comment at the end of
  `config.FIELD = ...`, else the comment lines just above it (within a file the first
  assignment's, where the default is set; earlier files lose to later)."""
  meanings = {}
  for path in paths:
    above, found = [], {}
    for line in open(path).read().splitlines():
      stripped = line.strip()
      match = ASSIGNMENT.match(line)
      if stripped.startswith("#"):
        above.append(stripped.lstrip("# "))
      elif match:
        meaning = match.group(2) or " ".join(above)
        if meaning and match.group(1) not in found:
          found[match.group(1)] = meaning.strip()
      else:
        above = []
      if match:
        above = []
    meanings.update(found)
  return meanings


def _help(main_module, config_module, spec: str) -> str:
  """--help: the entry point's usage, its flags and every top-level config field."""
  config = _load_config(spec)
  files = [os.path.join(CONFIG_DIR, "common.py"), config_module.__file__, spec.split(":")[0]]
  meanings = field_meanings([f for f in dict.fromkeys(files) if os.path.isfile(f)])
  lines = [(main_module.__doc__ or "").strip(), "", "Flags:",
           "  --workdir=DIR        output directory (required); rerunning the same command "
           "resumes or skips finished work",
           f"  --config=FILE[:variant]  config file (default {os.path.relpath(spec)}); may stand "
           "anywhere on the line",
           "  --config.FIELD=VALUE override a field (nested: --config.a.b=VALUE)",
           "  --distributed        call jax.distributed.initialize() first (multi-host; SLURM, "
           "Open MPI and Cloud TPU are auto-detected)",
           "  --coordinator_address=HOST:PORT --num_processes=N --process_id=I",
           "                       multi-host without a cluster manager (README, 'Clusters')",
           "  --noretain_freed_memory  give freed host memory back to the OS at once (glibc's "
           "default);",
           "                       by default it is kept for reuse (~10-20% faster steps on CPUs)",
           "  --verbosity=1        also show other libraries' INFO logs (orbax, jax, TF)",
           "", f"Config fields of {spec} (default): meaning:"]
  for name in sorted(config.keys()):
    value = config[name]
    if hasattr(value, "items") and len(value) > 4:  # a stage's whole config (run_study)
      shown = f"{len(value)} fields; override with --config.{name}.FIELD=VALUE"
    else:
      shown = repr(dict(value) if hasattr(value, "items") else value)
    lines.append(f"  {name} ({shown}): {meanings.get(name, 'see README')}")
  return "\n".join(lines)


class _OwnInfoOnly(std_logging.Filter):
  """Passes every WARNING and above (but BENIGN_WARNINGS), and INFO only from align_jax and
  experiments: orbax, jax and TensorFlow narrate each checkpoint and backend at INFO."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING:
      return not str(record.msg).startswith(BENIGN_WARNINGS)
    return any(f"{os.sep}{package}{os.sep}" in record.pathname for package in OWN_PACKAGES)


def run(config_module, entry: str, describe, check: str) -> None:
  """Defines --workdir, --config (+ --config.x=y overrides), --distributed; checks the config
  with align_jax.config_checks.<check> before anything heavy is imported; then calls `entry`
  ('package.module:function') with (config, workdir) and prints describe(result, workdir)."""
  if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO and warnings
  flags.DEFINE_string("workdir", None, "Output directory; rerunning with the same workdir "
                      "resumes or skips finished work.")
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first (multi-host; "
                    "auto-detects SLURM, Open MPI, Cloud TPU).")
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (implies "
                      "--distributed; else auto-detected).")
  flags.DEFINE_integer("num_processes", None, "How many processes (implies --distributed).")
  flags.DEFINE_integer("process_id", None, "This process's index, 0..num_processes-1 (implies "
                       "--distributed).")
  flags.DEFINE_bool("retain_freed_memory", True, "Keep freed host memory for reuse instead of "
                    "returning it to the OS (glibc; align_jax/host_memory.py): ~10-20% faster "
                    "steps on CPUs; resident memory stays near its peak.")
  default = os.path.join(CONFIG_DIR, os.path.basename(config_module.__file__))
  sys.argv = prepare_argv(sys.argv, default)  # config_flags reads sys.argv while defining
  if asks_for_help(sys.argv[1:]):
    spec = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith(CONFIG_FLAG + "=")),
                default)
    print(_help(sys.modules["__main__"], config_module, spec))
    if asks_for_help([a for a in sys.argv[1:] if a.startswith("--helpfull")]):
      # absl's own --helpfull exits 1; users expect 0
      print("\nEvery flag, absl's included:\n" + flags.FLAGS.get_help())
    sys.exit(0)
  fields = ", ".join(sorted(config_module.get_config().keys()))
  config_flags.DEFINE_config_file(
      "config", default, "Config file, optionally with ':variant' (see its docstring). Override "
      f"any field with --config.FIELD=VALUE; fields: {fields} (README explains each).",
      lock_config=True)
  flags.mark_flags_as_required(["workdir"])
  for name in ("workdir", "config", "distributed", "coordinator_address", "num_processes",
               "process_id", "retain_freed_memory"):  # listed under --help, not --helpfull only
    flags.FLAGS.register_flag_by_module(sys.argv[0], flags.FLAGS[name])
  app.run(lambda argv: _main(argv, entry, describe, check))


def _main(argv, entry: str, describe, check: str) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(max(flags.FLAGS.verbosity, logging.INFO))
  if flags.FLAGS.verbosity < 1:
    logging.get_absl_handler().addFilter(_OwnInfoOnly())
  from align_jax import config_checks  # pylint: disable=g-import-not-at-top  (light)
  from align_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  try:
    getattr(config_checks, check)(flags.FLAGS.config)
  except InputError as e:
    sys.exit(f"error: {e}")
  if flags.FLAGS.retain_freed_memory:  # before JAX's runtime starts its threads
    from align_jax import host_memory  # pylint: disable=g-import-not-at-top
    host_memory.retain_freed_memory()
  from align_jax import multihost  # pylint: disable=g-import-not-at-top
  from align_jax.training.checkpoint import CheckpointError  # pylint: disable=g-import-not-at-top
  module, function = entry.split(":")
  explicit = (flags.FLAGS.coordinator_address, flags.FLAGS.num_processes, flags.FLAGS.process_id)
  if flags.FLAGS.distributed or any(v is not None for v in explicit):
    multihost.initialize(*explicit)
  try:
    result = getattr(importlib.import_module(module), function)(flags.FLAGS.config,
                                                                flags.FLAGS.workdir)
  except (InputError, FloatingPointError, CheckpointError) as e:
    sys.exit(f"error: {e}")
  except OSError as e:  # permissions, full disks, paths through files: the OS says what
    sys.exit(f"error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
  if result is None:  # a multi-host process whose part ended (process 0 writes the outputs)
    print(f"done: process {multihost.jax.process_index()}'s part; process 0 writes the outputs.")
    return
  print(describe(result, os.path.abspath(flags.FLAGS.workdir)))


def _metrics(values: dict[str, float]) -> str:
  return ", ".join(f"{k} {v:.4g}" for k, v in values.items())


def training_summary(result: dict, workdir: str) -> str:
  """What the train_* entry points print when a run ends."""
  return (f"done: step {result['step']}; validation {_metrics(result['validation'])}; test "
          f"{_metrics(result['test'])}; best checkpoint step {result['best_step']}\n"
          f"  workdir: {workdir}")


def alignment_summary(results: dict, workdir: str) -> str:
  """What the alignment and study entry points print when they end: where the report is."""
  models = len(results["models"])
  return (f"done: {len(results['rsa'])} RSA results for {models} model{'s' * (models != 1)} over "
          f"{results['n_images']:,} images\n"
          f"  report:  {os.path.join(workdir, 'report.md')}\n"
          f"  results: {os.path.join(workdir, 'results.json')}")
