"""Fields every training config shares; each model's config file overrides what differs."""

import os

import ml_collections


def fields_config(fields: list[tuple[str, object, str]]) -> ml_collections.ConfigDict:
  """A ConfigDict of (name, default, meaning) declarations (the meanings are `--help`'s)."""
  config = ml_collections.ConfigDict()
  for name, default, _ in fields:
    config[name] = default
  return config


def meanings(fields: list[tuple[str, object, str]]) -> dict[str, str]:
  """name -> meaning of (name, default, meaning) declarations."""
  return {name: meaning for name, _, meaning in fields}


def training_fields() -> list[tuple[str, object, str]]:
  """The training engine's fields, (name, default, meaning); docs/training.md explains each."""
  return [
      ("model", "", "architecture: philnet, resnet18, resnet34, resnet50 or vae"),
      ("model_kwargs", ml_collections.ConfigDict(), "the model's constructor arguments"),
      ("task", "classification", "'classification' or 'vae': loss, metrics, preprocessing"),
      ("task_kwargs", ml_collections.ConfigDict({"target_field": "label"}),
       "the task's arguments: target_field 'label' (CIFAR-10 hard labels) or 'human_probs' "
       "(CIFAR-10H label distributions; fine-tuning); classification also takes "
       "label_smoothing (share mixed with the uniform distribution in training) and "
       "test_time_augmentation ('', 'flip' or 'flip_shift': evaluation also reports tta_* "
       "metrics)"),
      ("data_dir", os.environ.get("ALIGN_JAX_DATA_DIR", ""),
       "a directory in the official binary layout ('' = tensorflow-datasets, which downloads); "
       "default $ALIGN_JAX_DATA_DIR"),
      ("num_validation", 5000, "seeded hold-out of the training split for model selection"),
      ("train_subset", 0, "train on this many images (0 = all remaining)"),
      ("test_subset", 0, "report on the first N test images (0 = all 10,000)"),
      ("num_folds", 0, "CIFAR-10H fine-tuning: folds of the test images (0 = ordinary CIFAR-10 "
       "training; experiments.finetune_cifar10h sets it)"),
      ("fold", 0, "CIFAR-10H fine-tuning: the held-out fold (train on the other folds)"),
      ("input_pipeline", "auto", "'device' (training arrays kept on the devices, batches drawn "
       "and augmented inside the step), 'host' (a background thread) or 'auto' (device when the "
       "arrays fit in a quarter of the smallest device's memory)"),
      ("alternating_flips", False, "device pipeline: each image's horizontal flip alternates "
       "between epochs from a random start, instead of a coin per epoch"),
      ("batch_size", 128, "global, split over all devices"),
      ("eval_batch_size", 500, "images per evaluation batch (padding is masked)"),
      ("num_epochs", 50, "epochs of training (the cosine schedule spans them)"),
      ("optimizer", "adamw", "'adamw' (decoupled weight decay) or 'sgd' (Nesterov momentum, "
       "weight decay added to the gradients)"),
      ("learning_rate", 1e-3, "peak learning rate (linear warm-up, then lr_schedule's decay)"),
      ("lr_schedule", "cosine", "decay after the warm-up: 'cosine' or 'linear'"),
      ("warmup_epochs", 1.0, "linear warm-up from 0, in epochs"),
      ("final_lr_fraction", 0.0, "the decay ends at learning_rate times this"),
      ("weight_decay", 5e-4, "weight decay, kernels only (no decay on BatchNorm/bias)"),
      ("adam_b1", 0.9, "adamw: first-moment decay"),
      ("adam_b2", 0.999, "adamw: second-moment decay"),
      ("momentum", 0.9, "sgd: Nesterov momentum"),
      ("whitening_init", False, "start the convolution that reads the image as a whitening "
       "of the training patches (+/- principal directions; it stays trainable)"),
      ("ema_decay", 0.0, "evaluate, select and export an exponential moving average of the "
       "weights and BatchNorm statistics, with this per-step decay (0 = off)"),
      ("grad_clip_norm", 0.0, "clip gradients to this global norm (0 = no clipping)"),
      ("dtype", "float32", "compute precision: 'float32', or 'bfloat16' (bf16 activations and "
       "products; parameters, optimizer state, losses and logits stay float32)"),
      ("layer_impl", "auto", "layers rewritten where XLA:CPU is slow: 'auto' (on CPU only), "
       "'rewritten' (always) or 'xla' (never); same numbers up to float rounding "
       "(docs/performance.md)"),
      ("seed", 0, "seeds initialisation, dropout, augmentation and the validation split"),
      ("init_from", "", "start from a weights file: an .npz keyed by 'params/...' paths, or an "
       "orbax checkpoint/workdir"),
      ("log_every_steps", 50, "one training log line (and TensorBoard scalars) every N steps"),
      ("keep_checkpoints", 2, "evaluated checkpoints kept (plus the best)"),
      ("evaluations_per_epoch", 1, "validate and keep an evaluated checkpoint this many times "
       "per epoch, evenly spaced, the last at the epoch end (finer accuracy matching)"),
      ("evaluation_epochs", 0, "evaluations_per_epoch applies to the first N epochs (0 = all); "
       "later epochs validate at their end only"),
      ("checkpoint_every_steps", 200, "also save (for resumption only) every N steps; 0 = off"),
      ("allow_config_change", False, "resume a workdir under changed settings (recorded)"),
      ("sample_every_steps", 0, "tasks with image outputs (VAE): also every N steps"),
  ]


def training_config() -> ml_collections.ConfigDict:
  """Defaults of the training engine; each model's config file overrides what differs."""
  return fields_config(training_fields())


TRAINING_HELP = meanings(training_fields())


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
