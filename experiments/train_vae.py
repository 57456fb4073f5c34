"""Train the convolutional VAE on CIFAR-10.

  python -m experiments.train_vae --workdir=W [--config=experiments/configs/vae.py[:smoke]]
"""

from align_jax.runtime import config_checks
from experiments import cli, main
from experiments.configs import vae

if __name__ == "__main__":
  main.run(vae, main.train, cli.training_summary, config_checks.training)
