"""Train the convolutional VAE on CIFAR-10.

  python -m experiments.train_vae --workdir=W [--config=experiments/configs/vae.py[:smoke]]
"""

from experiments import training_main

if __name__ == "__main__":
  training_main.run("vae.py")
