"""Train PhilNet on CIFAR-10.

  python -m experiments.train_philnet --workdir=W [--config=experiments/configs/philnet.py[:smoke]]
"""

from experiments import training_main

if __name__ == "__main__":
  training_main.run("philnet.py")
