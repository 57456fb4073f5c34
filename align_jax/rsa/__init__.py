"""Representational Similarity Analysis on plain arrays: exact, fast, memory-bounded.

Arrays in, numbers out: nothing here imports models, checkpoints or TensorFlow.
"""

from align_jax.rsa.inference import (CI_SOURCES, HumanAnnotators, bootstrap, bootstrap_methods,
                                     paired_bootstrap, permutation_test)
from align_jax.rsa.cka import linear_cka
from align_jax.rsa.comparison import METHODS, compare, compare_methods, rsa_score
from align_jax.rsa.human import human_class_rdm, human_rdm
from align_jax.rsa.reliability import noise_ceiling, noise_ceilings
from align_jax.rsa.dissimilarity import METRICS, class_rdm, rdm, rdm_from_square, square_from_rdm

__all__ = [
    "CI_SOURCES", "HumanAnnotators", "METHODS", "METRICS", "bootstrap", "bootstrap_methods",
    "class_rdm", "compare", "compare_methods", "human_class_rdm", "human_rdm", "linear_cka",
    "noise_ceiling", "noise_ceilings", "paired_bootstrap", "permutation_test", "rdm", "rdm_from_square", "rsa_score",
    "square_from_rdm",
]
