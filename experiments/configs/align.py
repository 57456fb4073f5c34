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

import align_jax

from experiments.configs import common


def fields() -> list[tuple[str, object, str]]:
  """The alignment's fields, (name, default, meaning); docs/alignment.md explains each."""
  return [
      ("models", "", "label=WORKDIR,...: training workdirs (optionally @best, @latest or @STEP), "
       "fine-tuning workdirs or .npz model files"),
      ("checkpoint", "best", "of training workdirs: 'best' (validation metric) or 'latest'"),
      ("data_dir", os.environ.get("ALIGN_JAX_DATA_DIR", ""),
       "a directory in the official binary layout ('' = tensorflow-datasets); default "
       "$ALIGN_JAX_DATA_DIR"),
      ("num_images", 0, "the first N CIFAR-10 test images (0 = all 10,000)"),
      ("classifier_layers", "penultimate,logits,probs", "classifier layers compared with "
       "humans; probs = softmax of the logits"),
      ("vae_layers", "latent_mean", "VAE layers compared with humans"),
      ("reduction", "mean", "spatial layers: 'mean' (global average) or 'projection'"),
      ("max_dims", 4096, "projection size for reduction='projection'"),
      ("batch_size", 500, "images per jitted feature-extraction batch"),
      ("metric", "correlation", "RDM metric, the same for models and humans"),
      ("methods", "spearman,rho-a", "RDM comparisons; the first is bootstrapped pairwise"),
      ("n_bootstrap", 1000, "resamples of images for CIs and model differences (0 = none)"),
      ("ci_source", "images+annotators", "what CIs resample: 'images+annotators' (two-level: "
       "images, then each image's annotators) or 'images' (both hold 95% CIs' coverage in "
       "simulation: docs/rsa_statistics.md)"),
      ("n_permutations", 1000, "image-label permutations for p-values (0 = none)"),
      ("comparisons", "", "the paired tests (first method), Holm-corrected as one family: "
       "'a/LAYER:b/LAYER,...', or '' for every pair of models sharing a layer (and the first "
       "layers of models sharing none)"),
      ("n_fold_bootstrap", 200, "within-fold RSA of fine-tuned networks: resamples within each "
       "fold for the CI of the fold mean (0 = none)"),
      ("n_ceiling_splits", 4, "annotator split halves that calibrate the noise ceiling"),
      ("n_kappa_resamples", 1000, "bootstrap resamples for the error-consistency CI"),
      ("figure_images", 500, "images shown in RDM heatmaps (a seeded subset)"),
      ("seed", 0, "seeds every resampling, split, projection and figure subset"),
      ("cache_dir", align_jax.user_cache_dir(), "per-user cache shared by every output folder: "
       "noise ceilings ('' = off: each output folder keeps its own in OUT/cache/); "
       "$ALIGN_JAX_CACHE_DIR moves it"),
  ]


HELP = common.meanings(fields())


def get_config(arg: str | None = None):
  config = common.fields_config(fields())
  return common.choose_variant(config, arg, {"quick": dict(
      num_images=1000, n_bootstrap=50, n_permutations=50, n_fold_bootstrap=50,
      n_ceiling_splits=8,
      n_kappa_resamples=200, figure_images=300)})
