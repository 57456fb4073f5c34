"""The names configs may use, in a module light enough to check a config before JAX loads.

The modules that implement them import these tuples (tests check they agree with what is
implemented), so there is one list of each.
"""

MODELS = ("philnet", "resnet18", "resnet34", "resnet50", "vae")  # models.MODELS
TASKS = ("classification", "vae")  # training.tasks.TASKS
METRICS = ("euclidean", "sqeuclidean", "rsa_euclidean", "correlation", "cosine")  # RDM metrics
METHODS = ("spearman", "rho-a", "pearson", "cosine", "kendall-tau-a", "kendall-tau-b")
CI_SOURCES = ("images", "images+annotators")  # what bootstrap CIs resample
FINETUNE_TARGETS = ("cifar10h", "cifar10")  # soft human labels; the hard-label control
FINETUNE_MODES = ("full", "head")  # the whole network, or its classifier head alone
STUDY_ARCHITECTURES = ("philnet", "resnet50", "vae")
COMPUTE_DTYPES = ("float32", "bfloat16")  # training compute precision (config.dtype)
LAYER_IMPLS = ("auto", "rewritten", "xla")  # convolution rewrites (models/layers.py)
TEST_TIME_AUGMENTATIONS = ("", "flip", "flip_shift")  # training.tasks.TEST_TIME_VIEWS, or none
OPTIMIZERS = ("adamw", "sgd")  # training.train_state.create_optimizer
LR_SCHEDULES = ("cosine", "linear")  # training.train_state.learning_rate_schedule
INPUT_PIPELINES = ("auto", "device", "host")  # data.device_pipeline.choose
