"""Train PhilNet on CIFAR-10.

  python -m experiments.train_philnet --workdir=W [--config=experiments/configs/philnet.py[:smoke]]
"""

from experiments import main
from experiments.configs import philnet

if __name__ == "__main__":
  main.run(philnet, "align_jax.training.loop:train_and_evaluate", main.training_summary,
           check="training")
