"""Representational Similarity Analysis on plain arrays: exact, fast, memory-bounded.

Arrays in, numbers out: nothing here imports models, checkpoints or TensorFlow.
"""

from align_jax.rsa.inference import (CI_SOURCES, HumanAnnotators, bootstrap, bootstrap_methods,
                                     default_interval, interval_bounds, paired_bootstrap,
                                     paired_result, permutation_p_value, permutation_test)
from align_jax.rsa.cka import linear_cka
from align_jax.rsa.comparison import METHODS, RANK_METHODS, compare, compare_methods, rsa_score
from align_jax.rsa.dissimilarity import class_rdm, rdm, rdm_from_square, square_from_rdm
from align_jax.rsa.distances import METRICS
from align_jax.rsa.human import human_class_rdm, human_rdm
from align_jax.rsa.joint import JointResult, resample_jointly
from align_jax.rsa.reliability import noise_ceiling, noise_ceilings

__all__ = [
    "CI_SOURCES", "HumanAnnotators", "JointResult", "METHODS", "METRICS", "RANK_METHODS",
    "bootstrap", "bootstrap_methods", "class_rdm", "compare", "compare_methods",
    "default_interval", "human_class_rdm", "human_rdm", "interval_bounds", "linear_cka",
    "noise_ceiling", "noise_ceilings", "paired_bootstrap", "paired_result",
    "permutation_p_value", "permutation_test", "rdm", "rdm_from_square", "resample_jointly",
    "rsa_score", "square_from_rdm",
]
