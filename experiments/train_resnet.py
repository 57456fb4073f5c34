"""Train ResNet-50 on CIFAR-10.

  python -m experiments.train_resnet --workdir=W [--config=experiments/configs/resnet50.py[:smoke]]
"""

from experiments import main
from experiments.configs import resnet50

if __name__ == "__main__":
  main.run(resnet50, "align_jax.training.loop:train_and_evaluate", main.training_summary,
           check="training")
