"""The command line of every entry point: help, config overrides, a clear message where the
project is not installed, which logs are shown, and the closing line.

`--config=FILE[:variant]` moves ahead of the `--config.FIELD=VALUE` overrides (absl's
config_flags needs it first; users write it anywhere), and every override is checked against
the config's fields, so a typo is one `error:` line with a suggestion instead of a traceback.
`--help` lists every flag and every top-level config field with the meaning its config file
declares (`HELP`).
"""

import difflib
import importlib.util
import logging
import os
import sys

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
CONFIG_FLAG = "--config"
HELP_FLAGS = ("--help", "-h", "--helpshort", "-?", "--helpfull")
TRUE_VALUES = ("", "true", "t", "1", "yes", "y")  # absl's spellings of a true boolean flag
OWN_PACKAGES = ("align_jax", "experiments")
# Warnings orbax gives for every checkpoint opened read-only, as the alignment does by design.
BENIGN_WARNINGS = ("CheckpointManagerOptions.read_only=True", "Given directory is read only")
FLAGS_HELP = """Flags:
  --workdir=DIR        output directory (required); rerunning the same command resumes or
                       skips finished work
  --config=FILE[:variant]  config file (default {default}); may stand anywhere on the line
  --config.FIELD=VALUE override a field (nested: --config.a.b=VALUE)
  --distributed        call jax.distributed.initialize() first (multi-host; SLURM, Open MPI
                       and Cloud TPU are auto-detected)
  --coordinator_address=HOST:PORT --num_processes=N --process_id=I
                       multi-host without a cluster manager (docs/clusters.md)
  --noretain_freed_memory  give freed host memory back to the OS at once (glibc's default);
                       by default it is kept for reuse on CPUs (docs/performance.md)
  --verbosity=1        also show other libraries' INFO logs (orbax, jax, TF)"""


def asks_for_help(args: list[str]) -> bool:
  """Whether `args` ask for help: a help flag alone or as --help=true (absl's boolean form)."""
  for arg in args:
    name, _, value = arg.partition("=")
    if name in HELP_FLAGS and value.lower() in TRUE_VALUES:
      return True
  return False


def explain_missing_dependency(error: ModuleNotFoundError) -> None:
  """Where the project is not installed in this Python: the entry point's usage (for --help,
  exit 0) or an `error:` line (exit 1), each saying how to install, instead of a traceback."""
  install = (f"align_jax's dependencies are not installed in this Python ({sys.executable}: "
             f"no module named {error.name!r}); from the repository root: python3 -m venv .venv "
             "&& . .venv/bin/activate && pip install -e . (README, 'Set up and test')")
  if asks_for_help(sys.argv[1:]):
    usage = (getattr(sys.modules.get("__main__"), "__doc__", None) or "").strip()
    print(f"{usage}\n\nThe full list of flags and config fields needs the dependencies:\n"
          f"{install}")
    sys.exit(0)
  sys.exit(f"error: {install}")


def load_config(spec: str):
  """get_config(variant) of config file `spec` ('path[:variant]'), as config_flags does."""
  path, _, variant = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_align_jax_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    return module.get_config(variant or None), module
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
  if CONFIG_FLAG in argv[1:]:
    sys.exit("error: write --config=FILE[:variant] with '='.")
  given = [a for a in argv[1:] if a.startswith(CONFIG_FLAG + "=")]
  rest = [a for a in argv[1:] if a not in given]
  spec = given[-1].split("=", 1)[1] if given else default_config
  if not os.path.isfile(spec.partition(":")[0]):
    sys.exit(f"error: --config={spec}: no such file (relative paths start in the current "
             f"directory, {os.getcwd()}; the configs live in {CONFIG_DIR}).")
  overrides = [a[len(CONFIG_FLAG) + 1:].split("=", 1)[0] for a in rest
               if a.startswith(CONFIG_FLAG + ".")]
  if overrides and not asks_for_help(rest):
    fields = field_names(load_config(spec)[0])
    for name in overrides:
      if name not in fields:
        close = difflib.get_close_matches(name, fields, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        sys.exit(f"error: --config.{name} is not a field of {spec}{hint}; --help lists the "
                 "fields.")
  return argv[:1] + given[-1:] + rest


def help_text(usage: str, spec: str) -> str:
  """--help: the entry point's usage, its flags and every top-level config field of `spec`
  with its default and the meaning the config file declares."""
  config, module = load_config(spec)
  lines = [usage.strip(), "", FLAGS_HELP.format(default=os.path.relpath(spec.split(":")[0])),
           "", f"Config fields of {spec} (default): meaning:"]
  for name in sorted(config.keys()):
    value = config[name]
    if hasattr(value, "items") and len(value) > 4:  # a stage's whole config (run_study)
      shown = f"{len(value)} fields; override with --config.{name}.FIELD=VALUE"
    else:
      shown = repr(dict(value) if hasattr(value, "items") else value)
    lines.append(f"  {name} ({shown}): {module.HELP[name]}")
  return "\n".join(lines)


class OwnInfoOnly(logging.Filter):
  """Passes every WARNING and above (but BENIGN_WARNINGS), and INFO only from align_jax and
  experiments: orbax, jax and TensorFlow narrate each checkpoint and backend at INFO."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING:
      return not str(record.msg).startswith(BENIGN_WARNINGS)
    return any(f"{os.sep}{package}{os.sep}" in record.pathname for package in OWN_PACKAGES)


def training_summary(result: dict, workdir: str) -> str:
  """What the train_* entry points print when a run ends."""
  metrics = lambda values: ", ".join(f"{k} {v:.4g}" for k, v in values.items())
  return (f"done: step {result['step']}; validation {metrics(result['validation'])}; test "
          f"{metrics(result['test'])}; best checkpoint step {result['best_step']}\n"
          f"  workdir: {workdir}")


def alignment_summary(results: dict, workdir: str) -> str:
  """What the alignment and study entry points print when they end: where the report is."""
  models = len(results["models"])
  return (f"done: {len(results['rsa'])} RSA results for {models} model{'s' * (models != 1)} over "
          f"{results['n_images']:,} images\n"
          f"  report:  {os.path.join(workdir, 'report.md')}\n"
          f"  results: {os.path.join(workdir, 'results.json')}")
