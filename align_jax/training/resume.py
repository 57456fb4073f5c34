"""Whether a requested config may continue the run saved in a workdir, and the run's records.

`config.json` describes the weights in `checkpoints/`, so a rerun must not silently continue
under different settings: while a checkpoint exists, every field is compared except
ALLOWED_CHANGES (bookkeeping that does not change the weights); a workdir without checkpoints
has no weights to protect and simply takes the new config. `data_dir` is compared by the data's identity, not its path (a
checksum of the test images, test labels and training labels, plus CIFAR-10H when
fine-tuning), so moving the data is harmless and swapping it is not. A field an older
config.json lacks counts as its FIELD_DEFAULTS value. `allow_config_change=True` overrides the
check; `run.json` then records what changed and when.
"""

import datetime
import json
import os

from align_jax.errors import InputError

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
ALLOWED_CHANGES = ("log_every_steps", "eval_batch_size", "keep_checkpoints",
                   "evaluations_per_epoch", "evaluation_epochs", "sample_every_steps", "checkpoint_every_steps",
                   "allow_config_change", "data_dir", "layer_impl")
FIELD_DEFAULTS = {  # fields added after workdirs already existed, with their old behaviour
    "task_kwargs.target_field": "label",
    "dtype": "float32",
    "layer_impl": "auto",
    "input_pipeline": "host",  # its default 'auto' draws other batches: asked for, not assumed
    "alternating_flips": False,
    "optimizer": "adamw",
    "lr_schedule": "cosine",
    "momentum": 0.9,
    "whitening_init": False,
    "ema_decay": 0.0,
}


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _read(path: str) -> dict | None:
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise InputError(f"{path} cannot be read as JSON ({e}): the workdir is damaged. Restore the "
                     "file or use another --workdir.") from e


def differences(saved: dict, requested: dict) -> dict[str, tuple]:
  """{field: (saved, requested)} of every non-allowed field that differs."""
  missing = object()
  saved, requested = _flat(saved), _flat(requested)
  out = {}
  for field in sorted(set(saved) | set(requested)):
    if field.split(".")[0] in ALLOWED_CHANGES:
      continue
    old = saved.get(field, FIELD_DEFAULTS.get(field, missing))
    new = requested.get(field, missing)
    if old != new and not (old == {} and new is missing) and not (new == {} and old is missing):
      out[field] = tuple("<not set>" if v is missing else v for v in (old, new))
  return out


def check_and_record(config, workdir: str, identity: str, has_checkpoints: bool) -> None:
  """Refuses (InputError, before any write) to continue a run whose config or data differ
  (`identity`: data.splits.data_identity), unless config.allow_config_change; then writes
  config.json and run.json."""
  requested = json.loads(config.to_json_best_effort())
  saved = _read(os.path.join(workdir, CONFIG_FILE)) if has_checkpoints else None
  run = _read(os.path.join(workdir, RUN_FILE)) or {"config_changes": []}
  changes = differences(saved, requested) if saved is not None else {}
  if saved is not None and run.get("data_identity") not in (None, identity):
    changes["data (identity of the images and labels)"] = (run["data_identity"][:12],
                                                            identity[:12])
  if changes and not config.get("allow_config_change", False):
    listed = "\n  - ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
    raise InputError(
        f"{workdir} holds a run with other settings; continuing would mix two experiments:\n"
        f"  - {listed}\nUse another --workdir, or pass --config.allow_config_change=True to "
        f"continue anyway (recorded in {RUN_FILE}).")
  if changes:
    run["config_changes"].append({
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "changes": {k: list(v) for k, v in changes.items()}})
  run["data_identity"] = identity
  _write(os.path.join(workdir, CONFIG_FILE),
         config.to_json_best_effort(indent=2, sort_keys=True))
  _write(os.path.join(workdir, RUN_FILE), json.dumps(run, indent=2, default=str))


def _write(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text + "\n")
  os.replace(tmp, path)
