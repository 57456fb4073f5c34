"""Fields every training config shares; each model's config file overrides what differs."""

import os

import ml_collections


def training_config() -> ml_collections.ConfigDict:
  """Defaults of the training engine (see README for what each field does)."""
  config = ml_collections.ConfigDict()
  config.model = ""
  config.model_kwargs = ml_collections.ConfigDict()
  config.task = "classification"
  config.task_kwargs = ml_collections.ConfigDict()
  # Data: a directory in the official binary layout, else tfds + download ('').
  config.data_dir = os.environ.get("ALIGN_JAX_DATA_DIR", "")
  config.num_validation = 5000  # seeded hold-out of the training split for model selection
  config.train_subset = 0  # train on this many images (0 = all remaining)
  config.test_subset = 0  # report on the first N test images (0 = all 10,000)
  # CIFAR-10H fine-tuning: train on k-1 of num_folds folds of the test images, hold out `fold`
  # (0 = ordinary CIFAR-10 training; experiments.finetune_cifar10h sets these).
  config.num_folds = 0
  config.fold = 0
  # Optimisation: AdamW, linear warm-up then cosine decay; no decay on BatchNorm/bias.
  config.batch_size = 128  # global, split over all devices
  config.eval_batch_size = 500
  config.num_epochs = 50
  config.learning_rate = 1e-3
  config.warmup_epochs = 1.0
  config.final_lr_fraction = 0.0
  config.weight_decay = 5e-4
  config.adam_b1 = 0.9
  config.adam_b2 = 0.999
  config.grad_clip_norm = 0.0  # 0 = no clipping
  config.seed = 0
  # Start from a weights file (.npz keyed by 'params/...' paths, or an orbax checkpoint/workdir).
  config.init_from = ""
  # Bookkeeping.
  config.log_every_steps = 50
  config.keep_checkpoints = 2
  config.sample_every_steps = 0  # tasks with image outputs (VAE): also every N steps
  return config


SMOKE = dict(num_validation=256, train_subset=512, test_subset=256, batch_size=64,
             eval_batch_size=128, num_epochs=2, warmup_epochs=0.0, log_every_steps=4)


def apply_variant(config: ml_collections.ConfigDict, arg: str | None,
                  **smoke_overrides) -> ml_collections.ConfigDict:
  """Applies the ':smoke' variant (tiny data, a few steps; per-model overrides on top)."""
  return choose_variant(config, arg, {"smoke": dict(SMOKE, **smoke_overrides)})


def choose_variant(config: ml_collections.ConfigDict, arg: str | None,
                   variants: dict[str, dict]) -> ml_collections.ConfigDict:
  """Updates `config` with variants[arg] (nothing when arg is empty); unknown names fail."""
  if arg in variants:
    config.update(variants[arg])
  elif arg:
    raise ValueError(f"Unknown config variant {arg!r}; use one of "
                     f"{[':' + v for v in variants]} or nothing.")
  return config
