"""How align_jax runs, apart from what it computes: the backend policy, multi-host start-up,
output-directory locks, host memory, progress lines, TensorBoard files, and the config checks
light enough to run before JAX loads."""
