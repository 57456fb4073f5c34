"""Train the convolutional VAE on CIFAR-10.

  python -m experiments.train_vae --workdir=W [--config=experiments/configs/vae.py[:smoke]]
"""

from experiments import main
from experiments.configs import vae

if __name__ == "__main__":
  main.run(vae, "align_jax.training.loop:train_and_evaluate", main.training_summary,
           check="training")
