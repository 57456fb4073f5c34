"""ResNet-50 on CIFAR-10.

Full recipe (GPU-scale: CIFAR stem, 100 epochs, global batch 256, AdamW lr 2e-3 with 2 warm-up
epochs and cosine decay, weight decay 5e-4 on kernels, zero-init of each block's last BN scale):
  python -m experiments.train_resnet --workdir=W --config=experiments/configs/resnet50.py
Smoke test (ImageNet stem on 256 images; about a minute and a half on 2 CPU cores):
  python -m experiments.train_resnet --workdir=W --config=experiments/configs/resnet50.py:smoke
On CPUs the CIFAR stem is about ten times slower than the ImageNet stem (docs/performance.md),
so CPU runs use subsets (--config.train_subset) and the ImageNet stem.
Pretrained weights: --config.init_from=PATH (.npz keyed by 'params/...' or an orbax checkpoint).
"""

from experiments.configs import common

HELP = common.TRAINING_HELP


def get_config(arg: str | None = None):
  config = common.training_config()
  config.model = "resnet50"
  config.model_kwargs.num_classes = 10
  config.model_kwargs.stem = "cifar"
  config.model_kwargs.zero_init_last_bn = True
  config.batch_size = 256
  config.num_epochs = 100
  config.learning_rate = 2e-3
  config.warmup_epochs = 2.0
  if arg == "smoke":
    config.model_kwargs.stem = "imagenet"
  return common.apply_variant(config, arg, num_validation=128, train_subset=256,
                              test_subset=128, batch_size=32, eval_batch_size=64,
                              num_epochs=1)
