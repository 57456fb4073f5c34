"""The main job: train every architecture, fine-tune on CIFAR-10H, align, report.

  python -m experiments.run_study --workdir=OUT [--config=experiments/configs/study.py[:quick or :cpu]]
"""

from align_jax.runtime import config_checks
from experiments import cli, main
from experiments.configs import study


def run_study(config, workdir: str) -> dict | None:
  from align_jax.pipeline import study as study_lib  # pylint: disable=g-import-not-at-top
  return study_lib.run_study(config, workdir)


if __name__ == "__main__":
  main.run(study, run_study, cli.alignment_summary, config_checks.study)
