"""Fields every training config shares; each model's config file overrides what differs."""

import os

import ml_collections


def training_config() -> ml_collections.ConfigDict:
  """Defaults of the training engine (see README for what each field does)."""
  config = ml_collections.ConfigDict()
  config.model = ""  # architecture: philnet, resnet18, resnet34, resnet50 or vae
  config.model_kwargs = ml_collections.ConfigDict()  # the model's constructor arguments
  config.task = "classification"  # 'classification' or 'vae': loss, metrics, preprocessing
  # 'label' (CIFAR-10 hard labels) or 'human_probs' (CIFAR-10H label distributions; fine-tuning)
  config.task_kwargs = ml_collections.ConfigDict({"target_field": "label"})
  # a directory in the official binary layout ('' = tensorflow-datasets, which downloads)
  config.data_dir = os.environ.get("ALIGN_JAX_DATA_DIR", "")
  config.num_validation = 5000  # seeded hold-out of the training split for model selection
  config.train_subset = 0  # train on this many images (0 = all remaining)
  config.test_subset = 0  # report on the first N test images (0 = all 10,000)
  # CIFAR-10H fine-tuning (experiments.finetune_cifar10h sets both): train on the other folds
  config.num_folds = 0  # folds of the test images (0 = ordinary CIFAR-10 training)
  config.fold = 0  # the held-out fold
  # Optimisation: AdamW, linear warm-up then cosine decay; no decay on BatchNorm/bias.
  config.batch_size = 128  # global, split over all devices
  config.eval_batch_size = 500  # images per evaluation batch (padding is masked)
  config.num_epochs = 50  # epochs of training (the cosine schedule spans them)
  config.learning_rate = 1e-3  # peak AdamW learning rate
  config.warmup_epochs = 1.0  # linear warm-up from 0, in epochs
  config.final_lr_fraction = 0.0  # the cosine decay ends at learning_rate times this
  config.weight_decay = 5e-4  # AdamW weight decay, kernels only
  config.adam_b1 = 0.9  # Adam's first-moment decay
  config.adam_b2 = 0.999  # Adam's second-moment decay
  config.grad_clip_norm = 0.0  # clip gradients to this global norm (0 = no clipping)
  # compute precision: 'float32', or 'bfloat16' (bf16 activations and products; parameters,
  # optimizer state, losses and logits stay float32; no loss scaling needed)
  config.dtype = "float32"
  # layers (convolutions, transposed convolutions, 2x2 max-pools) rewritten where XLA:CPU is
  # slow: 'auto' (on CPU only), 'rewritten' (always) or 'xla' (never); same numbers up to
  # float rounding (README, "Training speed")
  config.layer_impl = "auto"
  config.seed = 0  # seeds initialisation, dropout, augmentation and the validation split
  # start from a weights file: an .npz keyed by 'params/...' paths, or an orbax checkpoint/workdir
  config.init_from = ""
  config.log_every_steps = 50  # one training log line (and TensorBoard scalars) every N steps
  config.keep_checkpoints = 2  # epoch-end checkpoints kept (plus the best)
  config.checkpoint_every_steps = 200  # also save (for resumption only) every N steps; 0 = off
  config.allow_config_change = False  # resume a workdir under changed settings (recorded)
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
