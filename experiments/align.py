r"""Alignment of trained models with CIFAR-10H: RDMs, RSA statistics, behaviour, report.

  python -m experiments.align --workdir=OUT --config.models=philnet=W1,resnet50=W2,vae=W3 \
      [--config=experiments/configs/align.py[:quick]]
"""

from experiments import main
from experiments.configs import align


if __name__ == "__main__":
  main.run(align, "align_jax.pipeline.align:run_alignment", main.alignment_summary,
           check="alignment")
