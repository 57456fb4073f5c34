"""Train ResNet-50 on CIFAR-10.

  python -m experiments.train_resnet --workdir=W [--config=experiments/configs/resnet50.py[:smoke]]
"""

from align_jax.runtime import config_checks
from experiments import cli, main
from experiments.configs import resnet50

if __name__ == "__main__":
  main.run(resnet50, main.train, cli.training_summary, config_checks.training)
