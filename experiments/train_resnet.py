"""Train ResNet-50 on CIFAR-10.

  python -m experiments.train_resnet --workdir=W [--config=experiments/configs/resnet50.py[:smoke]]
"""

from experiments import training_main

if __name__ == "__main__":
  training_main.run("resnet50.py")
