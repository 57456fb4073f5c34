"""The main job: train every architecture, fine-tune on CIFAR-10H, align, report.

  python -m experiments.run_study --workdir=OUT [--config=experiments/configs/study.py[:quick]]
"""

from experiments import main
from experiments.configs import study


def _summary(results: dict) -> str:
  return f"done: {len(results['models'])} models aligned; the report is in --workdir/report.md"


if __name__ == "__main__":
  main.run(study, "align_jax.pipeline.study:run_study", _summary)
