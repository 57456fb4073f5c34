"""The main job: train every architecture, fine-tune on CIFAR-10H, align, report.

  python -m experiments.run_study --workdir=OUT [--config=experiments/configs/study.py[:quick or :cpu]]
"""

from experiments import main
from experiments.configs import study


if __name__ == "__main__":
  main.run(study, "align_jax.pipeline.study:run_study", main.alignment_summary,
           check="study")
