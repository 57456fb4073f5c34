r"""Fine-tune a CIFAR-10 classifier on CIFAR-10H soft labels, k-fold over the test images, with
the hard-label control; out-of-fold predictions and features feed experiments.align.

  python -m experiments.finetune_cifar10h --workdir=F --config.init_from=W_PHILNET \
      [--config=experiments/configs/finetune_cifar10h.py[:quick]]
"""

from align_jax.runtime import config_checks
from experiments import main
from experiments.configs import finetune_cifar10h


def _summary(summary: dict, workdir: str) -> str:
  """What the run prints when it ends: per target, its held-out accuracy per fold (the
  temperature baseline: its temperature per fold)."""
  def per_fold(info: dict) -> str:
    if "temperatures" in info:
      return f"temperature per fold {[round(t, 3) for t in info['temperatures']]}"
    return f"held-out accuracy per fold {[round(a, 3) for a in info['held_out_accuracy']]}"
  return (f"done ({summary['mode']}): "
          + "; ".join(f"{target}: {per_fold(info)}" for target, info in summary["targets"].items())
          + f"\n  workdir: {workdir}")


def _finetune(config, workdir: str) -> dict | None:
  from align_jax.pipeline import finetune  # pylint: disable=g-import-not-at-top
  return finetune.finetune_cifar10h(config, workdir)


if __name__ == "__main__":
  main.run(finetune_cifar10h, _finetune, _summary, config_checks.finetune)
