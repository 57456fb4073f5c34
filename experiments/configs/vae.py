"""Convolutional VAE on CIFAR-10 images (on [0, 1], flips only).

Full recipe (the original study's 20 epochs; latent 256, beta 1, L1 reconstruction, AdamW lr
1e-3, global batch 128, no weight decay):
  python -m experiments.train_vae --workdir=W --config=experiments/configs/vae.py
Smoke test (about a minute on 2 CPU cores): append ':smoke'. Reconstruction/sample grids land
in W/samples/ and in TensorBoard after every epoch (and every sample_every_steps if set).
"""

import ml_collections

from experiments.configs import common

HELP = common.TRAINING_HELP


def get_config(arg: str | None = None):
  config = common.training_config()
  config.model = "vae"
  config.model_kwargs.latent_dim = 256
  config.task = "vae"
  config.task_kwargs = ml_collections.ConfigDict()
  config.task_kwargs.beta = 1.0
  config.task_kwargs.kl_warmup_steps = 0  # linear KL warm-up over this many steps
  config.num_epochs = 20
  config.weight_decay = 0.0
  config.warmup_epochs = 0.0
  if arg == "smoke":
    config.task_kwargs.kl_warmup_steps = 8
  return common.apply_variant(config, arg)
