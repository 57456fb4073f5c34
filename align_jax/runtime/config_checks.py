"""Config validation for every entry point: each check lists every bad field with what is
allowed, raising one InputError. Light (no JAX, no TensorFlow), so the command line reports a
bad value at once; the library functions run the same checks for API users."""

import os

from align_jax.errors import InputError
from align_jax.runtime import names


def split_list(text: str) -> list[str]:
  """A comma-separated config field -> its items: 'a, b,c' -> ['a', 'b', 'c']."""
  return [item.strip() for item in text.split(",") if item.strip()]


def _raise(what: str, problems: list[str]) -> None:
  if problems:
    raise InputError(f"Bad {what}:\n  - " + "\n  - ".join(problems))


def _data_dir(config) -> list[str]:
  if config.data_dir and not os.path.isdir(os.path.expanduser(config.data_dir)):
    return [f"data_dir={config.data_dir!r} is not a directory (set it, or ALIGN_JAX_DATA_DIR, "
            "to a data directory; empty means tensorflow-datasets)"]
  return []


def training(config) -> None:
  """The training engine's config (experiments/configs/common.py and the model files)."""
  checks = [
      (config.model in names.MODELS, f"model={config.model!r} is not one of {names.MODELS}"),
      (config.task in names.TASKS, f"task={config.task!r} is not one of {names.TASKS}"),
      (config.num_epochs > 0, f"num_epochs={config.num_epochs} must be > 0"),
      (config.batch_size > 0, f"batch_size={config.batch_size} must be > 0"),
      (config.eval_batch_size > 0, f"eval_batch_size={config.eval_batch_size} must be > 0"),
      (config.learning_rate > 0, f"learning_rate={config.learning_rate} must be > 0"),
      (config.dtype in names.COMPUTE_DTYPES,
       f"dtype={config.dtype!r} is not one of {names.COMPUTE_DTYPES}"),
      (config.layer_impl in names.LAYER_IMPLS,
       f"layer_impl={config.layer_impl!r} is not one of {names.LAYER_IMPLS}"),
      (config.weight_decay >= 0, f"weight_decay={config.weight_decay} must be >= 0"),
      (config.optimizer in names.OPTIMIZERS,
       f"optimizer={config.optimizer!r} is not one of {names.OPTIMIZERS}"),
      (config.lr_schedule in names.LR_SCHEDULES,
       f"lr_schedule={config.lr_schedule!r} is not one of {names.LR_SCHEDULES}"),
      (0 <= config.momentum < 1, f"momentum={config.momentum} must be in [0, 1)"),
      (0 <= config.ema_decay < 1, f"ema_decay={config.ema_decay} must be in [0, 1) (0 = off)"),
      (config.input_pipeline in names.INPUT_PIPELINES,
       f"input_pipeline={config.input_pipeline!r} is not one of {names.INPUT_PIPELINES}"),
      (config.task_kwargs.get("test_time_augmentation", "") in names.TEST_TIME_AUGMENTATIONS,
       f"task_kwargs.test_time_augmentation="
       f"{config.task_kwargs.get('test_time_augmentation')!r} is not one of "
       f"{names.TEST_TIME_AUGMENTATIONS}"),
      (0 <= config.task_kwargs.get("label_smoothing", 0.0) < 1,
       f"task_kwargs.label_smoothing={config.task_kwargs.get('label_smoothing')} must be in "
       "[0, 1)"),
      (not (config.alternating_flips and config.input_pipeline == "host"),
       "alternating_flips needs the device pipeline (input_pipeline 'auto' or 'device')"),
      (0 <= config.final_lr_fraction <= 1,
       f"final_lr_fraction={config.final_lr_fraction} must be in [0, 1]"),
      (0 <= config.warmup_epochs < config.num_epochs,
       f"warmup_epochs={config.warmup_epochs} must be in [0, num_epochs={config.num_epochs})"),
      (config.train_subset >= 0, f"train_subset={config.train_subset} must be >= 0 (0 = all)"),
      (config.test_subset >= 0, f"test_subset={config.test_subset} must be >= 0 (0 = all)"),
      (config.num_folds == 0 or config.num_folds >= 2,
       f"num_folds={config.num_folds} must be 0 (CIFAR-10 training) or >= 2"),
      (0 <= config.fold < max(config.num_folds, 1),
       f"fold={config.fold} must be in 0..{max(config.num_folds - 1, 0)}"),
      (config.log_every_steps > 0, f"log_every_steps={config.log_every_steps} must be > 0"),
      (config.keep_checkpoints > 0, f"keep_checkpoints={config.keep_checkpoints} must be > 0"),
      (config.evaluations_per_epoch >= 1,
       f"evaluations_per_epoch={config.evaluations_per_epoch} must be >= 1"),
      (config.evaluation_epochs >= 0,
       f"evaluation_epochs={config.evaluation_epochs} must be >= 0 (0 = every epoch)"),
      (config.checkpoint_every_steps >= 0,
       f"checkpoint_every_steps={config.checkpoint_every_steps} must be >= 0 (0 = epoch ends "
       "only)"),
      (config.sample_every_steps >= 0,
       f"sample_every_steps={config.sample_every_steps} must be >= 0 (0 = after each epoch)"),
  ]
  _raise("config", [message for ok, message in checks if not ok] + _data_dir(config))


def dense_evaluation_epochs(num_epochs: int, evaluation_epochs: int) -> int:
  """How many first epochs are validated `evaluations_per_epoch` times (0 = every epoch)."""
  return num_epochs if evaluation_epochs == 0 else min(evaluation_epochs, num_epochs)


def evaluated_checkpoints(config) -> int:
  """How many evaluated checkpoints a training config's run saves (training/loop.py)."""
  dense = dense_evaluation_epochs(config.num_epochs, config.evaluation_epochs)
  return dense * config.evaluations_per_epoch + config.num_epochs - dense


def comparison_pairs(text: str) -> list[tuple[str, str, str, str]]:
  """'a/layer:b/layer,...' -> [(a, layer, b, layer), ...] (InputError when malformed)."""
  pairs = []
  for entry in split_list(text):
    sides = [side.strip().rpartition("/") for side in entry.split(":")]
    if len(sides) != 2 or not all(s[0] and s[1] and s[2] for s in sides):
      raise InputError(f"comparisons entry {entry!r} must look like MODEL/LAYER:MODEL/LAYER.")
    pairs.append((sides[0][0], sides[0][2], sides[1][0], sides[1][2]))
  return pairs


def alignment(config) -> None:
  """experiments/configs/align.py."""
  problems = []
  if config.checkpoint not in ("best", "latest"):
    problems.append(f"checkpoint={config.checkpoint!r} must be 'best' or 'latest' (one model's "
                    "own checkpoint: label=WORKDIR@STEP in models)")
  if config.metric not in names.METRICS:
    problems.append(f"metric={config.metric!r} must be one of {names.METRICS}")
  methods = split_list(config.methods)
  if not methods or any(m not in names.METHODS for m in methods):
    problems.append(f"methods={config.methods!r} must list some of {names.METHODS}")
  for field in ("num_images", "n_bootstrap", "n_permutations", "n_kappa_resamples",
                "n_fold_bootstrap"):
    if config[field] < 0:
      problems.append(f"{field}={config[field]} must be >= 0")
  if config.num_images and config.num_images < 20:
    problems.append(f"num_images={config.num_images} must be 0 (all) or >= 20")
  for field in ("classifier_layers", "vae_layers"):
    if not split_list(config[field]):
      problems.append(f"{field} is empty: name at least one layer (docs/alignment.md)")
  if config.ci_source not in names.CI_SOURCES:
    problems.append(f"ci_source={config.ci_source!r} must be one of {names.CI_SOURCES}")
  try:
    comparison_pairs(config.comparisons)
  except InputError as e:
    problems.append(str(e).rstrip("."))
  if config.n_ceiling_splits < 1 or config.figure_images < 10 or config.batch_size < 1:
    problems.append("n_ceiling_splits and batch_size must be >= 1, figure_images >= 10")
  if config.cache_dir and os.path.isfile(os.path.expanduser(config.cache_dir)):
    problems.append(f"cache_dir={config.cache_dir!r} is a file: give a directory, or '' for no "
                    "shared cache")
  _raise("alignment config", problems + _data_dir(config))


def finetune(config) -> None:
  """experiments/configs/finetune_cifar10h.py."""
  problems = []
  if not config.init_from:
    problems.append("init_from is empty: name the CIFAR-10 training workdir to start from")
  elif not os.path.isfile(os.path.join(config.init_from, "config.json")):
    problems.append(f"init_from={config.init_from!r} is not a training workdir (no config.json)")
  if config.num_folds < 2:
    problems.append(f"num_folds={config.num_folds} must be >= 2")
  targets = split_list(config.targets)
  if not targets or any(t not in names.FINETUNE_TARGETS for t in targets):
    problems.append(f"targets={config.targets!r} must list some of {names.FINETUNE_TARGETS}")
  if not split_list(config.layers):
    problems.append("layers is empty: name the features to keep (e.g. 'penultimate,logits')")
  if config.mode not in names.FINETUNE_MODES:
    problems.append(f"mode={config.mode!r} must be one of {names.FINETUNE_MODES}")
  if config.head_steps < 1 or config.head_learning_rate <= 0:
    problems.append(f"head_steps={config.head_steps} must be >= 1 and head_learning_rate="
                    f"{config.head_learning_rate} > 0")
  _raise("fine-tuning config", problems + _data_dir(config))


def study(config) -> list[str]:
  """experiments/configs/study.py; returns the architectures it trains."""
  archs = split_list(config.architectures)
  problems = [f"architecture {a!r} is not one of {names.STUDY_ARCHITECTURES}" for a in archs
              if a not in names.STUDY_ARCHITECTURES]
  if not archs:
    problems.append(f"architectures is empty; choose from {names.STUDY_ARCHITECTURES}")
  if config.num_seeds < 1:
    problems.append(f"num_seeds={config.num_seeds} must be >= 1")
  if config.finetune_architecture and config.finetune_architecture not in archs:
    problems.append(f"finetune_architecture={config.finetune_architecture!r} must be one of "
                    f"the trained architectures {archs} (or '' to skip fine-tuning)")
  if config.finetune_architecture == "vae":
    problems.append("finetune_architecture='vae': CIFAR-10H fine-tuning needs a classifier")
  modes = split_list(config.finetune_modes)
  if config.finetune_architecture and (not modes or len(set(modes)) < len(modes) or any(
      m not in names.FINETUNE_MODES for m in modes)):
    problems.append(f"finetune_modes={config.finetune_modes!r} must list distinct modes of "
                    f"{names.FINETUNE_MODES}")
  if config.accuracy_matched:
    pair = config.accuracy_matched.split("=")
    if (len(pair) != 2 or pair[0] == pair[1] or any(a not in archs for a in pair)
        or "vae" in pair):
      problems.append(f"accuracy_matched={config.accuracy_matched!r} must be ARCH=REFERENCE: "
                      f"two different classifiers of {archs} (or '' to skip)")
    else:
      matched = config[pair[0]]
      evaluated = evaluated_checkpoints(matched)
      if matched.keep_checkpoints < evaluated:
        problems.append(f"accuracy_matched: {pair[0]} keeps {matched.keep_checkpoints} of its "
                        f"{evaluated} evaluated checkpoints, so the match could only choose "
                        f"among the last ones; set {pair[0]}.keep_checkpoints={evaluated}")
  _raise("study config", problems + _data_dir(config))
  return archs
