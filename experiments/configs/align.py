"""The alignment run: trained models vs CIFAR-10H (RSA, noise ceiling, behaviour, report).

Full run (all 10,000 test images, 1,000 bootstrap resamples and permutations; about 4 s per
resample and RDM on 2 CPU cores at n = 10,000, so a GPU or patience):
  python -m experiments.align --workdir=OUT --config=experiments/configs/align.py \
      --config.models=philnet=W1,resnet50=W2,vae=W3
Quick (1,000 images, 50 resamples; a few minutes on 2 CPU cores): append ':quick'.
Outputs: OUT/results.json, OUT/report.md, OUT/figures/*.png, OUT/rdms/*.npy (+ .json sidecars),
TensorBoard scalars rsa/<model>/<layer>/<method>.
"""

import os

import ml_collections

import align_jax

from experiments.configs import common


def get_config(arg: str | None = None):
  config = ml_collections.ConfigDict()
  config.models = ""  # label=WORKDIR,...; training workdirs or fine-tuning workdirs
  config.checkpoint = "best"  # of training workdirs: 'best' (validation metric) or 'latest'
  config.data_dir = os.environ.get("ALIGN_JAX_DATA_DIR", "")
  config.num_images = 0  # the first N CIFAR-10 test images (0 = all 10,000)
  config.classifier_layers = "penultimate,logits,probs"  # probs = softmax of the logits
  config.vae_layers = "latent_mean"  # VAE layers compared with humans
  config.reduction = "mean"  # spatial layers: 'mean' (global average) or 'projection'
  config.max_dims = 4096  # projection size for reduction='projection'
  config.batch_size = 500  # images per jitted feature-extraction batch
  config.metric = "correlation"  # RDM metric, the same for models and humans
  config.methods = "spearman,rho-a"  # RDM comparisons; the first is bootstrapped pairwise
  config.n_bootstrap = 1000  # resamples of images for CIs and model differences (0 = none)
  # what CIs resample: 'images+annotators' (two-level: images, then each image's annotators) or
  # 'images' (README, 'Uncertainty and p-values'; both hold 95% CIs' coverage in simulation)
  config.ci_source = "images+annotators"
  config.n_permutations = 1000  # image-label permutations for p-values (0 = none)
  # the paired tests (first method), Holm-corrected as one family: 'a/LAYER:b/LAYER,...', or ''
  # for every pair of models sharing a layer (and the first layers of models sharing none)
  config.comparisons = ""
  # within-fold RSA of fine-tuned networks: resamples within each fold for the CI of the
  # fold mean (0 = none)
  config.n_fold_bootstrap = 200
  config.n_ceiling_splits = 4  # annotator split halves that calibrate the noise ceiling
  config.n_kappa_resamples = 1000  # bootstrap resamples for the error-consistency CI
  config.figure_images = 500  # images shown in RDM heatmaps (a seeded subset)
  config.seed = 0
  # per-user cache shared by every output folder: noise ceilings ('' = off: each output folder
  # keeps its own in OUT/cache/); $ALIGN_JAX_CACHE_DIR moves it
  config.cache_dir = align_jax.user_cache_dir()
  return common.choose_variant(config, arg, {"quick": dict(
      num_images=1000, n_bootstrap=50, n_permutations=50, n_fold_bootstrap=50,
      n_ceiling_splits=8,
      n_kappa_resamples=200, figure_images=300)})
