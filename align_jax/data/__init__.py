"""Data: CIFAR-10 (binary directory or tfds), CIFAR-10H, and the host input pipeline."""
