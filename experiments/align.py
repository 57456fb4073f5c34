"""Alignment of trained models with CIFAR-10H: RDMs, RSA statistics, behaviour, report.

  python -m experiments.align --workdir=OUT --config.models=philnet=W1,resnet50=W2,vae=W3 \
      [--config=experiments/configs/align.py[:quick]]
"""

from experiments import main
from experiments.configs import align


def _summary(results: dict) -> str:
  return f"done: {len(results['rsa'])} RSA results over {results['n_images']} images; see report.md"


if __name__ == "__main__":
  main.run(align, "align_jax.pipeline.align:run_alignment", _summary)
