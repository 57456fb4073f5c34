"""Affordable fine-tuning toward humans on a frozen network: its classifier head refitted per
fold, and the temperature-scaling baseline (one scalar per fold, Guo et al. 2017).

Both work on the frozen network's features of the test images, computed once: the head is the
final dense layer (penultimate features -> logits), refitted from its trained weights by
full-batch AdamW on the training folds' targets (CIFAR-10H distributions or one-hot labels);
the temperature T minimises the cross-entropy of softmax(logits / T) against the training
folds' human distributions. Either is then applied to the held-out fold only.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import optimize

from align_jax.errors import InputError

TEMPERATURE_BOUNDS = (0.05, 20.0)  # the search range of T; a fit at a bound is reported


def find_head(params: dict, in_dim: int, num_classes: int) -> str:
  """The name of the top-level dense layer mapping [in_dim] features to [num_classes] logits."""
  found = [name for name, leaf in params.items()
           if isinstance(leaf, dict) and set(leaf) == {"kernel", "bias"}
           and tuple(np.shape(leaf["kernel"])) == (in_dim, num_classes)]
  if len(found) != 1:
    raise InputError(f"Cannot tell the classifier head of this model: {len(found)} top-level "
                     f"dense layers map {in_dim} features to {num_classes} classes ({found}). "
                     "Use mode='full'.")
  return found[0]


def cross_entropy(targets: np.ndarray, logits) -> jnp.ndarray:
  """Mean cross-entropy (nats) of target distributions [n, c] under softmax(logits [n, c])."""
  return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def fit_head(features: np.ndarray, targets: np.ndarray, kernel: np.ndarray, bias: np.ndarray,
             *, steps: int, learning_rate: float, weight_decay: float) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
  """A dense head refitted to `targets` [n, c] from (kernel [d, c], bias [c]) by `steps`
  full-batch AdamW steps on the mean cross-entropy (weight decay on the kernel only, as in
  training). Deterministic: no sampling."""
  params = {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}
  optimizer = optax.adamw(learning_rate, weight_decay=weight_decay,
                          mask={"kernel": True, "bias": False})
  x, y = jnp.asarray(features, jnp.float32), jnp.asarray(targets, jnp.float32)

  def loss(p):
    return cross_entropy(y, x @ p["kernel"] + p["bias"])

  @jax.jit
  def run(params):
    def step(carry, _):
      params, state = carry
      grads = jax.grad(loss)(params)
      updates, state = optimizer.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None
    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
    return params

  fitted = run(params)
  return np.asarray(fitted["kernel"]), np.asarray(fitted["bias"])


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
  """The temperature T minimising the cross-entropy of softmax(logits / T) against `targets`
  (a bounded 1-D search over log T; the loss is smooth and unimodal in practice)."""
  logits, targets = np.asarray(logits, np.float64), np.asarray(targets, np.float64)

  def loss(log_t):
    z = logits / np.exp(log_t)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -np.mean(np.sum(targets * log_probs, axis=1))

  low, high = np.log(TEMPERATURE_BOUNDS)
  result = optimize.minimize_scalar(loss, bounds=(low, high), method="bounded",
                                    options={"xatol": 1e-6})
  return float(np.exp(result.x))
