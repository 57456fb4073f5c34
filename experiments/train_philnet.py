"""Train PhilNet on CIFAR-10.

  python -m experiments.train_philnet --workdir=W [--config=experiments/configs/philnet.py[:smoke]]
"""

from align_jax.runtime import config_checks
from experiments import cli, main
from experiments.configs import philnet

if __name__ == "__main__":
  main.run(philnet, main.train, cli.training_summary, config_checks.training)
