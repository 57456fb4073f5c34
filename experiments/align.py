r"""Alignment of trained models with CIFAR-10H: RDMs, RSA statistics, behaviour, report.

  python -m experiments.align --workdir=OUT --config.models=philnet=W1,resnet50=W2,vae=W3 \
      [--config=experiments/configs/align.py[:quick]]
"""

from align_jax.runtime import config_checks
from experiments import cli, main
from experiments.configs import align


def run_alignment(config, workdir: str) -> dict | None:
  from align_jax.pipeline import align as alignment  # pylint: disable=g-import-not-at-top
  return alignment.run_alignment(config, workdir)


if __name__ == "__main__":
  main.run(align, run_alignment, cli.alignment_summary, config_checks.alignment)
