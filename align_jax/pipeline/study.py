"""`run_study(config, workdir)`: the main job. Trains (or reuses) every architecture for every
seed, fine-tunes one on CIFAR-10H (k-fold, with the hard-label control), runs the alignment
and ends with `workdir/report.md`.

Layout: workdir/train/<arch>-seed<k>/, workdir/finetune/, workdir/ (the alignment outputs).
`workdir/stages.json` records each finished stage with its config; a rerun skips those, and
refuses to reuse a stage whose config has changed (use another workdir, or delete the stage's
entry and folder to redo it).
"""

import json
import os

import ml_collections
from absl import logging

from align_jax import config_checks, multihost
from align_jax import workdir as workdir_lib
from align_jax.errors import InputError
from align_jax.pipeline import align, finetune, outputs
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
    ft_config = config.finetune.copy_and_resolve_references()
    ft_config.init_from = models[f"{config.finetune_architecture}-seed0"]
    ft_config.data_dir = config.data_dir
    ft_dir = os.path.join(workdir, "finetune")
    _stage(workdir, "finetune", ft_config,
           lambda: finetune.finetune_cifar10h(ft_config, ft_dir))
    models[f"{config.finetune_architecture}_cifar10h"] = ft_dir
  if not multihost.is_primary():  # the alignment is process 0's alone (align_jax/multihost.py)
    return None
  align_config = config.align.copy_and_resolve_references()
  align_config.models = ",".join(f"{label}={path}" for label, path in models.items())
  align_config.data_dir = config.data_dir
  _stage(workdir, "align", align_config,
         lambda: {"results": align.RESULTS_FILE,
                  "models": sorted(align.run_alignment(align_config, workdir)["models"])})
  with open(os.path.join(workdir, align.RESULTS_FILE)) as f:
    return json.load(f)
