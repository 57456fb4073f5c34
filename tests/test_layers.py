"""The layer rewrites (models/layers.py) against XLA's own layers and jax.grad, and the bfloat16
compute option.

Tolerances: float32, 2e-5 relative to the largest entry of each compared array for single
layers (a reordered sum of up to a few thousand float32 products; measured <= 2e-6 here and
<= 1.2e-5 on the full-size PhilNet layer of 131,072 rows; Winograd's form <= 9e-6 here, and
3e-5 against a float64 reference at PhilNet's widths, its own test), 1e-3 relative to each
array's norm for whole models' gradients (`_close_in_norm` says why), the max-pool's gradient
exactly.
"""

import functools
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from align_jax.data import input_pipeline
from align_jax.errors import InputError
from align_jax.models import create_model, layers
from align_jax.runtime import backend
from align_jax.training import resume, steps, tasks, train_state

TOL = 2e-5
NHWC = ("NHWC", "HWIO", "NHWC")


def _normal(seed, shape):
  """Standard normal float32 test data from numpy: jax.random would compile a generator for
  every new shape, which costs more than most of these tests."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _uniform(seed, shape):
  """Uniform [0, 1) float32 test data from numpy (see _normal)."""
  return jnp.asarray(np.random.default_rng(seed).random(shape), jnp.float32)


def _init(model, x, **kwargs):
  """model.init from key 1, jitted: one compilation instead of one per initialiser."""
  return jax.jit(functools.partial(model.init, **kwargs))(jax.random.key(1), x)


def _close(a, b, tol=TOL):
  """Every entry within tol of the largest entry of its array."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    assert x.shape == y.shape
    assert np.abs(x - y).max() <= tol * max(np.abs(y).max(), 1e-30), np.abs(x - y).max()


def _close_in_norm(a, b, tol=1e-3):
  """Each array within tol of its norm: in whole models, rounding can flip the sign of a
  pre-ReLU value within 1e-7 of zero (seen: 1 of 262,144 in PhilNet's first layer) or the
  larger of two near-equal values in a max-pool window, which routes one gradient entry
  differently (4.5e-4 of the norm in that case)."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    assert x.shape == y.shape
    assert np.linalg.norm(x - y) <= tol * max(np.linalg.norm(y), 1e-30), np.abs(x - y).max()


def _value_and_grads(fn, x, kernel):
  """fn(x, kernel), and the gradients of a random projection of it w.r.t. (x, kernel)."""
  value = fn(x, kernel)
  projection = _normal(9, value.shape)
  grads = jax.jit(jax.grad(lambda x, k: jnp.sum(fn(x, k) * projection), argnums=(0, 1)))
  return value, grads(x, kernel)


@pytest.mark.parametrize("batch,size,kernel_hw,padding,channels", [
    (20, 9, (3, 3), ((1, 1), (1, 1)), (6, 5)),  # 2 chunks of 10 images; patch matrices
    (32, 8, (3, 3), ((1, 1), (1, 1)), (6, 5)),  # 2 chunks of 16
    (3, 7, (1, 1), ((0, 0), (0, 0)), (6, 5)),
    (3, 7, (1, 1), ((0, 0), (0, 0)), (4, 9)),  # c_out >= c_in: kernel gradient as [c_in, c_out]
    (3, 5, (1, 1), ((1, 0), (0, 1)), (6, 5)),  # padded 1x1: XLA's input gradient
    (20, 9, (3, 3), ((1, 1), (1, 1)), (3, 32)),  # c_out >= 9 c_in (PhilNet's first layer), 2 chunks
    (5, 6, (2, 2), ((1, 0), (0, 1)), (6, 5)),  # asymmetric padding
    (4, 9, (5, 3), ((2, 2), (1, 1)), (6, 5)),
    (4, 9, (3, 3), ((0, 0), (0, 0)), (6, 5)),  # VALID
    (4, 9, (5, 3), ((2, 2), (1, 1)), (72, 80)),  # wide, 81 pixels, not 3x3: XLA's forward
    (4, 8, (3, 3), ((1, 1), (1, 1)), (32, 40)),  # Winograd, 4x4 output tiles
    (3, 9, (3, 3), ((1, 1), (1, 1)), (72, 80)),  # 4x4 tiles over 12x12, cropped to 9x9
    (3, 5, (3, 3), ((1, 1), (1, 1)), (32, 36)),  # 2x2 tiles (maps of 4-7 pixels), cropped
    (2, 10, (3, 3), ((0, 0), (0, 0)), (40, 32)),  # VALID Winograd: 8x8 output
    (2, 12, (3, 3), ((2, 0), (1, 2)), (32, 32)),  # uneven padding: 12x13 output
    (6, 2, (3, 3), ((1, 1), (1, 1)), (72, 80)),  # wide but 2x2: patch matrices
    (6, 1, (3, 3), ((1, 1), (1, 1)), (72, 80)),
])
def test_stride1_conv_gradients_equal_jax_grad_of_the_plain_convolution(batch, size, kernel_hw,
                                                                       padding, channels):
  x = _normal(0, (batch, size, size, channels[0]))
  kernel = _normal(1, (*kernel_hw, *channels))
  plain = lambda x, k: lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=NHWC)
  shifted = lambda x, k: layers.conv_stride1(x, k, padding)
  _close(_value_and_grads(shifted, x, kernel), _value_and_grads(plain, x, kernel))


def _hooked_conv(x, features, kernel_size, strides, padding):
  """(apply, kernel): apply(impl)(x, kernel) runs an nn.Conv through the rewrite hook of policy
  `impl`, with a random kernel and bias of the layer's shapes."""
  layer = lambda impl: nn.Conv(features, kernel_size, strides, padding=padding,
                               conv_general_dilated=layers.conv_general_dilated_for(impl))
  shapes = jax.eval_shape(layer("xla").init, jax.random.key(1), x)["params"]
  params = {name: _normal(seed, leaf.shape) for seed, (name, leaf) in enumerate(shapes.items())}
  apply = lambda impl: lambda x, k: layer(impl).apply({"params": {**params, "kernel": k}}, x)
  return apply, params["kernel"]


@pytest.mark.parametrize("kernel_size,strides,padding,rewritten", [
    ((3, 3), (1, 1), "SAME", True),
    ((4, 4), (2, 2), "SAME", True),  # odd width: space-to-depth, then stride 1 (even: below)
    ((2, 2), (2, 2), "VALID", True),
    ((3, 3), (2, 2), "SAME", True),  # kernel zero-extended to 4x4
    ((7, 7), (2, 2), ((3, 3), (3, 3)), True),
    ((1, 1), (2, 2), "SAME", True),  # every other pixel
    ((3, 3), (3, 3), ((1, 0), (2, 1)), True),
    ((3, 3), (2, 1), "SAME", False),  # unequal strides: XLA's own
])
def test_nn_conv_with_the_rewrite_hook_equals_xla(kernel_size, strides, padding, rewritten,
                                                  monkeypatch):
  x = _normal(0, (4, 16, 15, 5))
  apply, kernel = _hooked_conv(x, 7, kernel_size, strides, padding)
  calls = []
  original = layers.conv_stride1
  monkeypatch.setattr(layers, "conv_stride1", lambda *a: calls.append(1) or original(*a))
  _close(_value_and_grads(apply("rewritten"), x, kernel), _value_and_grads(apply("xla"), x, kernel))
  assert bool(calls) == rewritten


@pytest.mark.parametrize("size,kernel_size,stride,padding,kept", [
    (1, 3, 1, "SAME", (1, 1)),  # ResNet's 3x3 convolutions on 1x1 maps: the centre tap only
    (2, 3, 2, "SAME", (2, 2)),  # its strided one from 2x2 to 1x1: the taps over the 2x2 pixels
    (1, 7, 2, ((3, 3), (3, 3)), (1, 1)),  # a 7x7 stem on a single pixel
    (2, 7, 2, ((3, 3), (2, 4)), (2, 2)),  # uneven padding: columns 2-3 of the kernel
    (3, 5, 1, ((4, 0), (0, 4)), (3, 3)),  # two tap rows and two columns read only padding
    (4, 3, 2, "SAME", (3, 3)),  # every tap reads a pixel for some output: nothing dropped
    (2, 3, 1, "SAME", (3, 3)),
])
def test_kernel_taps_that_read_only_padding_are_dropped_exactly(size, kernel_size, stride,
                                                                padding, kept, monkeypatch):
  x = _normal(0, (3, size, size, 6))
  apply, kernel = _hooked_conv(x, 5, (kernel_size,) * 2, stride, padding)
  _close(_value_and_grads(apply("rewritten"), x, kernel), _value_and_grads(apply("xla"), x, kernel))
  kept_taps = []  # the kernel the rewrites are handed

  def record(x_, k_, *_):
    kept_taps.append(k_.shape[:2])
    return jnp.zeros(x_.shape[:-1] + k_.shape[-1:])

  monkeypatch.setattr(layers, "conv_stride1", record)
  monkeypatch.setattr(layers, "_strided_conv", record)
  apply("rewritten")(x, kernel)
  assert kept_taps == [kept]


@pytest.mark.parametrize("shape,patch_training,patch_inference", [
    ((3, 8, 6, 3), True, True),  # images (the VAE's first layer)
    ((2, 8, 8, 32), True, True),
    ((2, 4, 6, 40), True, False),  # wider than PATCH_INFERENCE_MAX_CHANNELS: XLA's in inference
    ((3, 7, 6, 3), False, False),  # odd height: space-to-depth
])
def test_4x4_stride_2_convolutions_as_patch_products_equal_xla(shape, patch_training,
                                                               patch_inference, monkeypatch):
  x = _normal(0, shape)
  apply, kernel = _hooked_conv(x, 5, (4, 4), (2, 2), "SAME")
  calls = []
  original = layers._gemm_conv_stride2  # pylint: disable=protected-access
  monkeypatch.setattr(layers, "_gemm_conv_stride2", lambda *a: calls.append(1) or original(*a))
  _close(apply("rewritten")(x, kernel), apply("xla")(x, kernel))
  assert bool(calls) == patch_inference
  _close(_value_and_grads(apply("rewritten"), x, kernel), _value_and_grads(apply("xla"), x, kernel))
  assert bool(calls) == patch_training


@pytest.mark.parametrize("features", [32, 3])  # wide; the VAE's 3-channel output layer
@pytest.mark.parametrize("impl", ["rewritten", "xla"])
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (2, 1, 1, 5)])  # a 1x1 map: all padding
def test_conv_transpose_2x_equals_flax_conv_transpose(features, impl, shape):
  x = _normal(0, shape)
  reference = nn.ConvTranspose(features, (4, 4), (2, 2), padding="SAME")
  ours = layers.ConvTranspose2x(features, impl=impl)
  variables = reference.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(
      jnp.shape, variables)
  _close(ours.init(jax.random.key(1), x), variables)  # same initialisation
  bias = variables["params"]["bias"] + 0.5
  run = lambda m: lambda x, k: m.apply({"params": {"kernel": k, "bias": bias}}, x)
  kernel = variables["params"]["kernel"]
  _close(_value_and_grads(run(ours), x, kernel), _value_and_grads(run(reference), x, kernel))


@pytest.mark.parametrize("shape,kernel_shape,padding,tile", [
    ((1, 8, 8, 32), (3, 3, 32, 64), ((1, 1), (1, 1)), 4),
    ((1, 8, 7, 64), (3, 3, 64, 32), ((1, 1), (1, 1)), 2),  # a side under 8: 2x2 tiles
    ((1, 4, 4, 512), (3, 3, 512, 512), ((1, 1), (1, 1)), 2),
    ((1, 3, 3, 512), (3, 3, 512, 512), ((1, 1), (1, 1)), 0),  # map too small
    ((1, 32, 32, 3), (3, 3, 3, 32), ((1, 1), (1, 1)), 0),  # too narrow (PhilNet's first layer)
    ((1, 32, 32, 64), (3, 3, 64, 31), ((1, 1), (1, 1)), 0),
    ((1, 32, 32, 64), (5, 5, 64, 64), ((2, 2), (2, 2)), 0),  # not 3x3
])
def test_winograd_is_chosen_for_wide_3x3_float32_convolutions(shape, kernel_shape, padding,
                                                              tile):
  assert layers._winograd_tile(jax.ShapeDtypeStruct(shape, jnp.float32), kernel_shape,
                               padding) == tile
  # bfloat16's 8 mantissa bits would not survive the transforms' sums (coefficients up to 8)
  assert layers._winograd_tile(jax.ShapeDtypeStruct(shape, jnp.bfloat16), kernel_shape,
                               padding) == 0


def test_winograd_error_against_float64_is_within_3e_5_of_the_output():
  """F(4x4, 3x3) sums products transformed by coefficients up to 8: more rounding than a
  direct convolution's, bounded here at a PhilNet width (measured 8e-6 against XLA's 6e-7)."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 16, 16, 128))
  kernel = rng.standard_normal((3, 3, 128, 256)) / np.sqrt(9 * 128)
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  exact = sum(np.einsum("bhwc,co->bhwo", padded[:, i:i + 16, j:j + 16], kernel[i, j])
              for i in range(3) for j in range(3))
  ours = layers.conv_stride1(jnp.asarray(x, jnp.float32), jnp.asarray(kernel, jnp.float32),
                                  ((1, 1), (1, 1)))
  assert layers._winograd_tile(ours, kernel.shape, ((1, 1), (1, 1))) == 4
  assert np.abs(np.asarray(ours, np.float64) - exact).max() <= 3e-5 * np.abs(exact).max()


@pytest.mark.parametrize("platform", ["cpu", "gpu", "tpu"])
def test_policy_picks_per_backend_and_rejects_unknown_names(platform, monkeypatch):
  """'auto' rewrites on CPUs only (the accelerator branches by patching the backend)."""
  monkeypatch.setattr(backend, "platform", lambda: platform)
  assert (layers.conv_general_dilated_for("auto") is not None) == (platform == "cpu")
  assert layers.conv_general_dilated_for("rewritten") is not None
  assert layers.conv_general_dilated_for("xla") is None
  x = _normal(0, (2, 4, 4, 8))
  calls, rewritten_pool = [], layers._first_max_pool  # pylint: disable=protected-access
  monkeypatch.setattr(layers, "_first_max_pool", lambda v: calls.append(1) or rewritten_pool(v))
  jax.grad(lambda v: layers.max_pool_2x2(v, "auto").sum())(x)
  assert bool(calls) == (platform == "cpu")  # the pooling gradient too
  with pytest.raises(InputError, match="layer_impl must be one of"):
    layers.conv_general_dilated_for("fast")


SLOW = pytest.mark.slow  # whole models whose layers or curves the default run also checks
MODELS = [pytest.param("philnet", {}, marks=SLOW),  # its training curves are compared below
          pytest.param("resnet18", {"zero_init_last_bn": False, "stage_sizes": (1, 1)}, marks=SLOW),
          pytest.param("resnet50", {"stem": "imagenet", "zero_init_last_bn": False,
                                    "stage_sizes": (1, 1)}, marks=SLOW),
          ("vae", {})]


@pytest.mark.parametrize("name,kwargs", MODELS)
def test_models_have_the_same_parameters_and_gradients_under_every_impl(name, kwargs):
  x = _uniform(0, (4, 32, 32, 3))
  models = {impl: create_model(name, layer_impl=impl, **kwargs) for impl in ("rewritten", "xla")}
  variables = {impl: _init(m, x, train=False) for impl, m in models.items()}
  assert jax.tree.map(jnp.shape, variables["rewritten"]) == jax.tree.map(jnp.shape,
                                                                      variables["xla"])
  _close(variables["rewritten"], variables["xla"])

  def grads(model):
    loss = lambda p: jnp.sum(model.apply({**variables["xla"], "params": p}, x,
                                         train=False)[0] ** 2)
    return jax.jit(jax.value_and_grad(loss))(variables["xla"]["params"])

  _close_in_norm(grads(models["rewritten"]), grads(models["xla"]))


# PhilNet without dropout; a two-stage ResNet-50 with the CIFAR stem (1x1 convolutions at 32x32
# and 16x16, Winograd's 3x3, a strided 3x3 and a strided 1x1 shortcut)
CURVE_MODELS = {"philnet": {"dropout_rate": 0.0},
                "resnet50": {"stage_sizes": (1, 1), "zero_init_last_bn": False}}


@functools.lru_cache(maxsize=None)  # the f32 rewritten run serves two tests
def _train_losses(impl: str, dtype=jnp.float32, n_steps: int = 6,
                  name: str = "philnet") -> tuple[list, dict]:
  model = create_model(name, layer_impl=impl, dtype=dtype, **CURVE_MODELS[name])
  task = tasks.ClassificationTask()
  variables = task.init_variables(model, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  state = train_state.create_train_state(variables, model.apply, optax.sgd(0.05))
  train = jax.jit(functools.partial(steps.train_step, task=task, model=model))
  key = jax.random.key(1)
  rng = np.random.default_rng(0)
  batch = {"image": rng.uniform(size=(16, 32, 32, 3)).astype(np.float32),
           "label": rng.integers(0, 10, 16).astype(np.int32)}
  losses = []
  for _ in range(n_steps):
    state, metrics = train(state, batch, key)
    losses.append(float(metrics.compute()["loss"]))
  return losses, state.params


@pytest.mark.parametrize("name", ["philnet", pytest.param("resnet50", marks=SLOW)])
def test_training_curves_are_equal_under_every_impl(name):
  rewritten, rewritten_params = _train_losses("rewritten", name=name)
  reference, reference_params = _train_losses("xla", name=name)
  assert reference[-1] < 0.85 * reference[0], reference  # the steps do train (PhilNet: to 0.6)
  # Rounding differences (Winograd's <= 3e-5 of a layer's output, the direct rewrites' ~1e-6)
  # stay near 1e-5 of the loss for three steps; then a pre-activation or a pooling tie within
  # rounding of the other branch flips, and SGD at lr 0.05 on 16 images carries it: measured
  # 6e-4 of the loss and of the parameters' norm at step 6 (the direct rewrites alone: 4e-5, 1e-4).
  # When it flips depends on the CPU's instructions: at step 4 on a Sapphire Rapids (8e-5).
  # The two-stage ResNet-50 (no max-pool, 1x1 products, strided layers): <= 2e-6 of the loss at
  # every step, 2e-5 of the parameters' norm.
  np.testing.assert_allclose(rewritten[:3], reference[:3], rtol=5e-5)  # measured <= 8e-6
  np.testing.assert_allclose(rewritten, reference, rtol=2e-3)
  flat = lambda tree: np.concatenate([np.ravel(p) for p in jax.tree.leaves(tree)])
  drift = np.linalg.norm(flat(rewritten_params) - flat(reference_params))
  assert drift <= 2e-3 * np.linalg.norm(flat(reference_params)), drift


def test_bfloat16_computes_in_bf16_keeps_float32_parameters_and_tracks_float32():
  model = create_model("philnet", dtype=jnp.bfloat16)
  x = _uniform(0, (4, 32, 32, 3))
  variables = _init(model, x, train=False)
  assert {p.dtype for p in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  logits, features = model.apply(variables, x, train=False)
  assert logits.dtype == jnp.float32 and features["block1"].dtype == jnp.bfloat16
  bf16, _ = _train_losses("rewritten", jnp.bfloat16, name="philnet")
  f32, _ = _train_losses("rewritten", name="philnet")  # cached: the curve test's run
  assert bf16[-1] < 0.7 * bf16[0], bf16
  np.testing.assert_allclose(bf16, f32, rtol=0.05)  # bf16 has 8 mantissa bits


def test_bfloat16_vae_returns_float32_statistics_and_reconstructions():
  model = create_model("vae", dtype=jnp.bfloat16)
  x = _uniform(0, (2, 32, 32, 3))
  variables = _init(model, x)
  reconstruction, features = model.apply(variables, x)
  assert reconstruction.dtype == features["latent_mean"].dtype == jnp.float32
  reference, _ = create_model("vae").apply(variables, x)
  assert float(jnp.abs(reconstruction - reference).max()) < 0.05


def test_max_pool_gradient_equals_xla_exactly_with_ties():
  x = jax.nn.relu(_normal(0, (3, 8, 6, 4)))  # ties at 0
  x = x.at[0, 0:2, 0:2, 0].set(0.7).at[1, 2:4, 4:6, 1].set(jnp.array([[0.2, 0.9], [0.9, 0.9]]))
  reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  g = _normal(1, (3, 4, 3, 4))
  grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * g))(x)
  ours = lambda x: layers.max_pool_2x2(x, "rewritten")
  np.testing.assert_array_equal(ours(x), reference(x))
  np.testing.assert_array_equal(grad(ours), grad(reference))
  odd = jnp.ones((1, 5, 4, 2))  # odd height: XLA's own pooling
  np.testing.assert_array_equal(layers.max_pool_2x2(odd, "rewritten"), reference(odd))


def test_strided_convolution_on_a_small_map_is_rewritten_in_inference_too(monkeypatch):
  x = _normal(0, (3, 4, 4, 9))  # 3x3 stride 2 -> 2x2 output
  layer = lambda impl: nn.Conv(5, (3, 3), (2, 2), padding="SAME", use_bias=False,
                               conv_general_dilated=layers.conv_general_dilated_for(impl))
  variables = _init(layer("xla"), x)
  calls = []
  original = layers.conv_stride1
  monkeypatch.setattr(layers, "conv_stride1", lambda *a: calls.append(1) or original(*a))
  _close(layer("rewritten").apply(variables, x), layer("xla").apply(variables, x))
  assert calls


def test_resume_allows_a_new_layer_impl_and_refuses_a_new_dtype():
  older = {"model": "philnet", "learning_rate": 1e-3}  # a config.json from before both fields
  current = dict(older, dtype="float32", layer_impl="auto")
  assert resume.differences(older, current) == {}
  assert resume.differences(current, dict(current, layer_impl="xla")) == {}
  assert resume.differences(current, dict(current, dtype="bfloat16")) == {
      "dtype": ("float32", "bfloat16")}


def _assert_usage_errors(main, bad_argvs, capsys):
  """A benchmark script's main stops on each bad command line with an `error:` line."""
  for argv in bad_argvs:
    with pytest.raises(SystemExit):
      main(argv)
    assert "error:" in capsys.readouterr().err, argv


@pytest.mark.slow  # a benchmark script's test (15 s): the default run stays under ~10 min
def test_step_profile_attributes_the_step_to_the_model_layers(capsys, monkeypatch):
  monkeypatch.syspath_prepend(str(pathlib.Path(__file__).parents[1] / "benchmarks"))
  import step_profile  # pylint: disable=g-import-not-at-top
  _assert_usage_errors(step_profile.main, [["--layer_impl=fast"], ["--steps=0"], ["--model=vgg"]],
                       capsys)
  step_profile.main(["--model=vae", "--batch_size=4", "--steps=1", "--top=40"])
  by_layer = capsys.readouterr().out.split("| layer | pass |")[1]
  rows = [line.strip("| ").split(" | ") for line in by_layer.splitlines()[2:] if line]
  # every convolution of the VAE is found by name, in the forward pass and in the gradient
  for layer in [f"encoder_convs_{i}" for i in range(3)] + [f"decoder_convs_{i}" for i in range(3)]:
    assert {r[1] for r in rows if r[0] == layer} == {"forward", "gradient"}, (layer, rows)
  assert abs(sum(float(r[3].rstrip("%")) for r in rows) - 100) < 5  # nearly all of the step


def test_conv_layers_benchmark_times_every_form_and_restores_the_default(capsys, monkeypatch):
  monkeypatch.syspath_prepend(str(pathlib.Path(__file__).parents[1] / "benchmarks"))
  import conv_layers  # pylint: disable=g-import-not-at-top
  _assert_usage_errors(conv_layers.main, [["--layers=8x32"], ["--layers=axb"], ["--repeats=0"]],
                       capsys)
  default = layers.WINOGRAD_MIN_CHANNELS
  conv_layers.main(["--layers=8x32x32", "--batch_size=2", "--repeats=1", "--no_torch"])
  rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 8x8")]
  assert [row.split(" | ")[1] for row in rows] == ["xla", "direct", "winograd"]
  assert layers.WINOGRAD_MIN_CHANNELS == default
  conv_layers.main(["--layers=4x8x16", "--kernel_size=1", "--batch_size=2", "--repeats=1",
                    "--no_torch"])
  rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 4x4")]
  assert [row.split(" | ")[1] for row in rows] == ["xla", "direct"]
  assert "1x1" in rows[0]


@pytest.mark.slow  # a benchmark script's test (~25 s)
def test_pipeline_overhead_benchmark_feeds_the_step_both_ways(capsys, monkeypatch, fake_data_dir):
  monkeypatch.syspath_prepend(str(pathlib.Path(__file__).parents[1] / "benchmarks"))
  import pipeline_overhead  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv("ALIGN_JAX_DATA_DIR", raising=False)
  _assert_usage_errors(pipeline_overhead.main, [
      [], ["--data_dir=/no/such/dir"], [f"--data_dir={fake_data_dir}", "--steps=0"],
      [f"--data_dir={fake_data_dir}", "--model=vgg"],
      [f"--data_dir={fake_data_dir}", "--batch_size=1000000"]], capsys)
  fed = []
  original = input_pipeline.train_batches
  monkeypatch.setattr(input_pipeline, "train_batches",
                      lambda *a, **k: (fed.append(k["seed"]) or b for b in original(*a, **k)))
  pipeline_overhead.main([f"--data_dir={fake_data_dir}", "--model=vae", "--batch_size=4",
                          "--steps=2", "--repeats=2", "--alone_batches=3"])
  lines = capsys.readouterr().out.strip().splitlines()
  step, alone = ([cell.strip() for cell in line.strip("| ").split(" | ")] for line in lines[-2:])
  assert step[0] == "vae train step, images/s" and step[1] == "4"
  fixed, host, device, host_fixed, device_fixed, device_host = map(float, step[2:])
  assert min(fixed, host, device) > 0
  assert abs(host_fixed - host / fixed) < 2e-3 and abs(device_fixed - device / fixed) < 2e-3
  assert abs(device_host - device / host) < 2e-3
  assert alone[0] == "pipeline alone, augmented images/s"
  ratio = float(alone[7])  # printed to 0.1, the rates to 1
  assert abs(ratio - float(alone[4]) / float(alone[3])) < 0.05 + 0.01 * ratio
  assert fed.count(0) >= 2 + 2 * 2  # the host pipeline (seed 0) fed the warm-up and both turns
  assert fed.count(1) >= 2 + 2 * 3  # and ran alone (seed 1): warm-up and two turns of 3
