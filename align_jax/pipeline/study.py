"""`run_study(config, workdir)`: the main job. Trains (or reuses) every architecture for every
seed, fine-tunes one on CIFAR-10H (k-fold, with the hard-label control, in each of
`finetune_modes`), picks the accuracy-matched checkpoint, runs the alignment and ends with
`workdir/report.md`.

Layout: workdir/train/<arch>-seed<k>/, workdir/finetune/<mode>/, workdir/ (the alignment
outputs). Alignment labels: <arch>-seed<k>; <arch>_cifar10h (mode full) or
<arch>_cifar10h_<mode>, each with _control and (first mode only) _temperature; <arch>_matched.
`workdir/stages.json` records each finished stage with its config; a rerun skips those, and
refuses to reuse a stage whose config has changed (use another workdir, or delete the stage's
entry and folder to redo it).
"""

import json
import os

import ml_collections
from absl import logging

from align_jax import features
from align_jax.errors import InputError
from align_jax.pipeline import align, finetune, outputs
from align_jax.runtime import config_checks, multihost
from align_jax.runtime import workdir as workdir_lib
from align_jax.runtime.config_checks import split_list
from align_jax.training import loop

STAGES_FILE = "stages.json"


def _stage(workdir: str, name: str, config: ml_collections.ConfigDict, run):
  """Runs `run()` unless stages.json records `name` as finished with the same config."""
  path = os.path.join(workdir, STAGES_FILE)
  stages = {}
  if os.path.isfile(path):
    with open(path) as f:
      stages = json.load(f)
  fingerprint = json.loads(config.to_json_best_effort(sort_keys=True))
  fingerprint.pop("cache_dir", None)  # where reusable work is kept changes no result
  if name in stages:
    if stages[name]["config"] != fingerprint:
      raise InputError(f"Stage {name!r} in {workdir} finished with a different config. Use a new "
                       f"--workdir, or delete its entry in {STAGES_FILE} and its outputs.")
    logging.info("Stage %s: finished earlier, skipped.", name)
    return stages[name]["result"]
  logging.info("Stage %s: running.", name)
  result = run()
  if multihost.is_primary():  # every process reads the record; process 0 writes it
    stages[name] = {"config": fingerprint, "result": result}
    outputs.atomic_write_json(path, stages)
  return result


def matched_checkpoint(workdir: str, reference: str, which: str) -> dict:
  """The kept evaluated checkpoint of `workdir` whose validation accuracy is closest to that
  of `reference`'s `which` checkpoint (the one the alignment scores); ties go to the earlier."""
  target = features.epoch_metrics(reference)[features.checkpoint_step(reference, which)]
  kept = sorted(features.epoch_metrics(workdir).items())
  step, metrics = min(kept, key=lambda item: abs(item[1]["accuracy"] - target["accuracy"]))
  return {"step": step, "accuracy": metrics["accuracy"],
          "reference_accuracy": target["accuracy"]}


def run_study(config, workdir: str) -> dict:
  """All stages; returns the alignment results (results.json's content). The output
  directory is locked while the study runs (each stage locks its own folder too)."""
  archs = config_checks.study(config)
  with workdir_lib.lock(workdir):
    return _run_stages(config, workdir, archs)


def _run_stages(config, workdir: str, archs: list[str]) -> dict | None:
  models = {}
  for arch in archs:
    for seed in range(config.num_seeds):
      label = f"{arch}-seed{seed}"
      train_config = config[arch].copy_and_resolve_references()
      train_config.seed = seed
      train_config.data_dir = config.data_dir
      run_dir = os.path.join(workdir, "train", label)
      _stage(workdir, f"train/{label}", train_config,
             lambda c=train_config, d=run_dir: loop.train_and_evaluate(c, d))
      models[label] = run_dir
  if config.finetune_architecture:
    for k, mode in enumerate(split_list(config.finetune_modes)):
      ft_config = config.finetune.copy_and_resolve_references()
      ft_config.init_from = models[f"{config.finetune_architecture}-seed0"]
      ft_config.data_dir = config.data_dir
      ft_config.mode = mode
      ft_config.temperature_baseline = ft_config.temperature_baseline and k == 0  # once
      ft_dir = os.path.join(workdir, "finetune", mode)
      _stage(workdir, f"finetune/{mode}", ft_config,
             lambda c=ft_config, d=ft_dir: finetune.finetune_cifar10h(c, d))
      suffix = "" if mode == "full" else f"_{mode}"
      models[f"{config.finetune_architecture}_cifar10h{suffix}"] = ft_dir
  if config.accuracy_matched:
    arch, reference = config.accuracy_matched.split("=")
    chosen = _stage(workdir, "accuracy_matched", ml_collections.ConfigDict(
        {"pair": config.accuracy_matched, "checkpoint": config.align.checkpoint}),
        lambda: matched_checkpoint(models[f"{arch}-seed0"], models[f"{reference}-seed0"],
                                   config.align.checkpoint))
    logging.info("Accuracy-matched %s: step %d (validation accuracy %.4f; %s %.4f).", arch,
                 chosen["step"], chosen["accuracy"], reference, chosen["reference_accuracy"])
    models[f"{arch}_matched"] = f"{models[f'{arch}-seed0']}@{chosen['step']}"
  if not multihost.is_primary():  # the alignment is process 0's alone (runtime/multihost.py)
    return None
  align_config = config.align.copy_and_resolve_references()
  align_config.models = ",".join(f"{label}={path}" for label, path in models.items())
  align_config.data_dir = config.data_dir
  _stage(workdir, "align", align_config,
         lambda: {"results": align.RESULTS_FILE,
                  "models": sorted(align.run_alignment(align_config, workdir)["models"])})
  with open(os.path.join(workdir, align.RESULTS_FILE)) as f:
    return json.load(f)
