"""Layers rewritten where XLA:CPU is slow, mostly at their gradients; same parameters, same
numbers up to float rounding (the max-pool exactly; tests/test_layers.py states the
tolerances). The policy `impl` is decided in runtime/backend.py: 'auto' rewrites on CPUs only,
'rewritten' always, 'xla' never. What each rewrite saves, per layer and per model, is measured
in docs/performance.md (benchmarks/conv_layers.py, benchmarks/train_bench.py).

- 3x3 stride-1 float32 convolutions at least WINOGRAD_MIN_CHANNELS wide, on maps of at least
  WINOGRAD_MIN_PIXELS: Winograd's minimal filtering F(4x4, 3x3) (F(2x2, 3x3) on maps under
  8x8; Lavin & Gray 2016) for the forward pass, the input gradient (itself such a convolution)
  and the kernel gradient: 36 multiplications per 4x4 outputs instead of 144, as 36 matrix
  products over all tiles. Its rounding is larger than a direct convolution's (bounded in the
  tests); bfloat16 keeps the direct form, whose 8 mantissa bits would not survive the
  transforms.
- Other convolutions (`conv_general_dilated_for(impl)`, the hook of flax's nn.Conv). Kernel
  gradients of stride-1 convolutions: dW[i, j] = sum over images and positions of
  shifted(x, i, j)^T g, kh*kw matrix products accumulated over chunks of CONV_CHUNK_IMAGES
  images so that each stays in cache, ordered so that XLA transposes each chunk's g once rather
  than every shifted x. Forward passes and input gradients of small output maps (at most
  IM2COL_MAX_PIXELS pixels, where XLA:CPU is slowest) and, in training, of layers at most
  IM2COL_MAX_CHANNELS wide, as one patch-matrix product per IM2COL_CHUNK_ROWS output pixels;
  XLA's own otherwise. 1x1 kernels (ResNet's bottlenecks) are one matrix product over all
  pixels for the forward pass and both gradients. Strided convolutions become stride-1 ones
  first: 1x1 kernels read every s-th pixel, other kernels are zero-extended to a multiple of
  the stride and s x s pixel blocks become channels.
- Kernel taps that read only padding, for every output, are dropped before any of this (exact):
  ResNet-50 with the ImageNet stem runs its last stage's 3x3 convolutions on 1x1 maps (only the
  centre tap reads a pixel) and its 3x3 stride-2 one from 2x2 to 1x1 (4 taps, where the
  stride-2 form would have extended the kernel to 16).
- 4x4 stride-2 convolutions padded by one pixel ('SAME' on even maps: the VAE encoder's) and
  4x4 stride-2 'SAME' transposed convolutions (`ConvTranspose2x`: its decoder's), each the
  other's adjoint: one matrix product of the 4x4 input patches (2x2 blocks of 2x2 pixels,
  stacked without a transpose) with the kernel, or of every input pixel with all 16 taps whose
  products are then summed as four shifted slices per output phase; both gradients are the
  same two products the other way round, from one patch array. (XLA's gradient of an
  input-dilated convolution costs many times its forward pass.) In inference, strided ones on
  inputs wider than PATCH_INFERENCE_MAX_CHANNELS keep XLA's convolution, faster there.
- 2x2 stride-2 max-pooling (`max_pool_2x2`): XLA's select-and-scatter gradient costs many times
  the forward pass; a mask of each window's first maximum gives the same gradient.
"""

import functools
import math

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from align_jax.runtime import backend

CONV_CHUNK_IMAGES = 16  # images per accumulated kernel-gradient product (the fastest tried)
IM2COL_MAX_CHANNELS = 64  # patch-matrix convolutions where the input or output is this narrow,
IM2COL_MAX_PIXELS = 16  # or the output map this small (where XLA:CPU is slowest)
STRIDED_MAX_PIXELS = 4  # strided ones in inference too, on outputs this small
PATCH_INFERENCE_MAX_CHANNELS = 32  # 4x4 stride-2 ones as patch products in inference too
IM2COL_CHUNK_ROWS = 2048  # output pixels per patch matrix (the fastest tried)
WINOGRAD_MIN_CHANNELS = 32  # Winograd 3x3 convolutions where the input and output are this wide
WINOGRAD_MIN_PIXELS = 4  # and the output map is at least this high and wide (4x4 tiles from 8)
_NHWC = ("NHWC", "HWIO", "NHWC")
# Winograd F(m x m, 3 x 3) (Lavin & Gray 2016, interpolation points 0, +-1, +-2, infinity): for an
# (m + 2)^2 input tile d and a 3x3 kernel w, the m x m output tile is A^T [(G w G^T) * (B^T d B)] A
_WINOGRAD = {  # m: (B^T, G, A^T)
    2: (((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
        ((1, 0, 0), (1 / 2, 1 / 2, 1 / 2), (1 / 2, -1 / 2, 1 / 2), (0, 0, 1)),
        ((1, 1, 1, 0), (0, 1, -1, -1))),
    4: (((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
         (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)),
        ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
         (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
        ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))),
}


def _plain(x, kernel, padding):
  return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_NHWC)


def _output_pixels(x, kernel_shape, padding) -> tuple[int, int]:
  """Output height and width of a stride-1 convolution of `x` with explicit `padding`."""
  return tuple(x.shape[1 + i] + sum(padding[i]) - kernel_shape[i] + 1 for i in range(2))


def _pad_map(x, padding):
  """x [b, h, w, c] zero-padded by ((top, bottom), (left, right))."""
  return jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))


def _chunk_size(batch: int, most: int = CONV_CHUNK_IMAGES) -> int:
  """The largest divisor of `batch` that is at most `most` (and at least 1)."""
  return max(d for d in range(1, max(min(batch, most), 1) + 1) if batch % d == 0)


def _im2col_conv(x, kernel, padding):
  """A stride-1 convolution as one matrix product per chunk of images: patches
  [pixels, kh*kw*c_in] times the kernel [kh*kw*c_in, c_out]."""
  kh, kw, c_in, c_out = kernel.shape
  b = x.shape[0]
  out_h, out_w = _output_pixels(x, kernel.shape, padding)
  chunk = _chunk_size(b, IM2COL_CHUNK_ROWS // (out_h * out_w))
  flat_kernel = kernel.reshape(kh * kw * c_in, c_out)

  def one_chunk(xc):
    xp = _pad_map(xc, padding)
    patches = jnp.concatenate([xp[:, i:i + out_h, j:j + out_w]
                               for i in range(kh) for j in range(kw)], axis=-1)
    return jnp.einsum("bhwk,ko->bhwo", patches, flat_kernel)

  if chunk == b:  # one chunk: no loop to compile
    return one_chunk(x)
  return lax.map(one_chunk, x.reshape(-1, chunk, *x.shape[1:])).reshape(b, out_h, out_w, c_out)


def _winograd_tile(x, kernel_shape, padding) -> int:
  """The output tile m of the Winograd form of this stride-1 convolution, 0 where it is not
  used: float32 3x3 kernels, both channel counts at least WINOGRAD_MIN_CHANNELS and an output
  map at least WINOGRAD_MIN_PIXELS high and wide; 4x4 tiles from 8x8 maps, 2x2 below."""
  kh, kw, c_in, c_out = kernel_shape
  smaller_side = min(_output_pixels(x, kernel_shape, padding))
  if ((kh, kw) != (3, 3) or x.dtype != jnp.float32 or min(c_in, c_out) < WINOGRAD_MIN_CHANNELS
      or smaller_side < WINOGRAD_MIN_PIXELS):
    return 0
  return 4 if smaller_side >= 2 * WINOGRAD_MIN_PIXELS else 2


def _combine(matrix, arrays):
  """matrix @ arrays for a small constant matrix and a list of equal-shaped arrays, written out
  as sums of (scaled) arrays so that XLA fuses them into one pass."""
  rows = []
  for row in matrix:
    terms = [a if c == 1 else -a if c == -1 else c * a for c, a in zip(row, arrays) if c]
    rows.append(functools.reduce(jnp.add, terms))
  return rows


def _tiles(x, matrix, m: int, tiles_hw):
  """matrix d matrix^T for every len(matrix[0])-square tile d of `x` at stride m (x holds
  exactly the rows and columns the tiles read): [len(matrix)^2, tiles, channels]. Rows are
  combined first and stacked, then columns, so that XLA compiles two small fusions (one per
  output would take 4x longer to compile and run slower)."""
  (th, tw), b, c = tiles_hw, x.shape[0], x.shape[-1]
  n_in = len(matrix[0])
  rows = jnp.stack(_combine(matrix, [x[:, i:i + m * th:m] for i in range(n_in)]))
  tiles = _combine(matrix, [rows[:, :, :, j:j + m * tw:m] for j in range(n_in)])
  return jnp.stack(tiles, axis=1).reshape(len(matrix) ** 2, b * th * tw, c)


def _input_tiles(x, padding, m: int, tiles_hw):
  """B^T d B for every (m + 2)^2 input tile d of padded `x`: [(m + 2)^2, tiles, c]."""
  (th, tw), h, w = tiles_hw, x.shape[1], x.shape[2]
  x = jnp.pad(x, ((0, 0), (padding[0][0], m * th + 2 - h - padding[0][0]),
                  (padding[1][0], m * tw + 2 - w - padding[1][0]), (0, 0)))
  return _tiles(x, _WINOGRAD[m][0], m, tiles_hw)


# jitted as one program: run eagerly (e.g. model.init outside jit), its ~100 small operations
# would each be compiled on their own (seconds); inside a jitted step XLA inlines it
@functools.partial(jax.jit, static_argnums=(2, 3))
def _winograd_conv(x, kernel, padding, m: int):
  """A stride-1 3x3 convolution in Winograd's form F(m x m, 3 x 3): per tile position, one
  matrix product of the transformed input tiles with the transformed kernel, (m + 2)^2 / m^2
  multiplications per output instead of 9 (4x fewer for m = 4)."""
  g = jnp.asarray(_WINOGRAD[m][1], x.dtype)
  out_h, out_w = _output_pixels(x, kernel.shape, padding)
  th, tw = -(-out_h // m), -(-out_w // m)
  u = jnp.einsum("ai,ijco,bj->abco", g, kernel, g).reshape((m + 2) ** 2, *kernel.shape[2:])
  products = jnp.einsum("ptc,pco->pto", _input_tiles(x, padding, m, (th, tw)), u)
  products = products.reshape(m + 2, m + 2, x.shape[0], th, tw, kernel.shape[3])
  a_t = _WINOGRAD[m][2]
  rows = jnp.stack(_combine(a_t, list(products)))  # [m, m + 2, b, th, tw, c_out]
  y = jnp.stack(_combine(a_t, list(rows.swapaxes(0, 1))), axis=-2)  # [m, b, th, tw, m, c_out]
  y = y.transpose(1, 2, 0, 3, 4, 5).reshape(x.shape[0], m * th, m * tw, kernel.shape[3])
  return y[:, :out_h, :out_w]


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _winograd_kernel_gradient(x, g, kernel_shape, padding, m: int):
  """dL/dkernel of `_winograd_conv`: G^T [sum over tiles (B^T d B)^T (A g A^T)] G."""
  g_t = jnp.asarray(_WINOGRAD[m][1], x.dtype)
  out_h, out_w = g.shape[1:3]
  th, tw = -(-out_h // m), -(-out_w // m)
  g = jnp.pad(g, ((0, 0), (0, m * th - out_h), (0, m * tw - out_w), (0, 0)))
  g_tiles = _tiles(g, tuple(zip(*_WINOGRAD[m][2])), m, (th, tw))  # A g A^T, A = (A^T)^T
  products = jnp.einsum("ptc,pto->pco", _input_tiles(x, padding, m, (th, tw)), g_tiles)
  return jnp.einsum("ai,abco,bj->ijco", g_t, products.reshape(m + 2, m + 2, *kernel_shape[2:]),
                    g_t)


def _conv_in_fastest_form(x, kernel, padding, training: bool):
  """A stride-1 convolution in its fastest form: Winograd's where `_winograd_tile` allows; one
  matrix product for 1x1 kernels; patch matrices for small maps, and in training for narrow
  layers, where XLA:CPU's convolution is slowest (in inference XLA fuses the narrow layers'
  convolutions with what follows, which patch matrices would undo); XLA's otherwise."""
  kh, kw, c_in, c_out = kernel.shape
  pixels = math.prod(_output_pixels(x, kernel.shape, padding))
  tile = _winograd_tile(x, kernel.shape, padding)
  if tile:
    return _winograd_conv(x, kernel, padding, tile)
  if kh == kw == 1:  # one product over all pixels (chunked patch products are slower)
    return jnp.einsum("bhwc,co->bhwo", _pad_map(x, padding), kernel[0, 0])
  if (pixels <= IM2COL_MAX_PIXELS
      or (training and min(c_in, c_out) <= IM2COL_MAX_CHANNELS)):
    return _im2col_conv(x, kernel, padding)
  return _plain(x, kernel, padding)


def kernel_gradient(x, g, kernel_shape, padding):
  """dL/dkernel of a stride-1 NHWC/HWIO convolution, from its input `x` and output gradient `g`."""
  tile = _winograd_tile(x, kernel_shape, padding)
  if tile:
    return _winograd_kernel_gradient(x, g, kernel_shape, padding, tile)
  kh, kw, c_in, c_out = kernel_shape
  accumulate = jnp.promote_types(x.dtype, jnp.float32)
  if kh == kw == 1:  # one product over all pixels (chunked products are slower)
    xp = _pad_map(x, padding).reshape(-1, c_in)
    return jnp.matmul(xp.T, g.reshape(-1, c_out),
                      preferred_element_type=accumulate).reshape(kernel_shape)
  height, width = g.shape[1:3]
  chunk = _chunk_size(x.shape[0])
  # XLA transposes the first operand of each product: with g first, the chunk's g once for all
  # taps; with x first, every shifted x (slower where kh*kw*c_in > c_out)
  g_first = c_out < kh * kw * c_in

  def add_chunk(total, xg):
    xc, gc = xg
    xp = _pad_map(xc, padding)
    taps = [xp[:, i:i + height, j:j + width] for i in range(kh) for j in range(kw)]
    products = [jnp.einsum("bhwo,bhwi->oi", gc, tap, preferred_element_type=accumulate)
                if g_first else
                jnp.einsum("bhwi,bhwo->io", tap, gc, preferred_element_type=accumulate)
                for tap in taps]
    return total + jnp.stack(products), None

  zero = jnp.zeros((kh * kw,) + ((c_out, c_in) if g_first else (c_in, c_out)), accumulate)
  if chunk == x.shape[0]:  # one chunk: no loop to compile
    total = add_chunk(zero, (x, g))[0]
  else:
    total = lax.scan(add_chunk, zero, (x.reshape(-1, chunk, *x.shape[1:]),
                                       g.reshape(-1, chunk, *g.shape[1:])))[0]
  return (total.transpose(0, 2, 1) if g_first else total).reshape(kernel_shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_stride1(x, kernel, padding):
  """A stride-1 NHWC/HWIO convolution with explicit `padding` ((top, bottom), (left, right));
  this body runs where nothing is differentiated (inference), `_forward` in training."""
  return _conv_in_fastest_form(x, kernel, padding, training=False)


def _forward(x, kernel, padding):
  return _conv_in_fastest_form(x, kernel, padding, training=True), (x, kernel)


def _input_gradient(g, kernel, padding):
  """dL/dx: the output gradient correlated with the kernel rotated by 180 degrees and its
  channels swapped, padded by (k - 1 - pad) on each side."""
  kh, kw = kernel.shape[:2]
  full = ((kh - 1 - padding[0][0], kh - 1 - padding[0][1]),
          (kw - 1 - padding[1][0], kw - 1 - padding[1][1]))
  return _conv_in_fastest_form(g, kernel[::-1, ::-1].transpose(0, 1, 3, 2), full, training=True)


def _backward(padding, residuals, g):
  x, kernel = residuals
  if all(0 <= p < k for pair, k in zip(padding, kernel.shape[:2]) for p in pair):
    dx = _input_gradient(g, kernel, padding)
  else:  # padding beyond the kernel: leave it to XLA
    (dx,) = jax.vjp(lambda x_: _plain(x_, kernel, padding), x)[1](g)
  return dx, kernel_gradient(x, g, kernel.shape, padding).astype(kernel.dtype)


conv_stride1.defvjp(_forward, _backward)


def _as_stride1(x, kernel, stride: int, padding):
  """A stride-s convolution as a stride-1, unpadded one with the same output, (x', kernel').

  1x1 kernels read every s-th pixel. Otherwise the kernel is zero-extended to a multiple of s
  taps, the input padded (or cropped) to exactly the rows and columns the outputs read, and
  s x s pixel blocks become channels: tap s*a + r becomes tap a of channel block r.
  """
  kh, kw, c, o = kernel.shape
  out = [(x.shape[1 + i] + sum(padding[i]) - k) // stride + 1 for i, k in enumerate((kh, kw))]
  if kh == kw == 1:
    x = _pad_map(x, padding)
    return x[:, :stride * out[0]:stride, :stride * out[1]:stride], kernel
  taps = [-(-k // stride) * stride for k in (kh, kw)]
  kernel = jnp.pad(kernel, ((0, taps[0] - kh), (0, taps[1] - kw), (0, 0), (0, 0)))
  needed = [(n - 1) * stride + t for n, t in zip(out, taps)]  # rows/columns read, padding in
  x = jnp.pad(x, ((0, 0), (padding[0][0], max(needed[0] - x.shape[1] - padding[0][0], 0)),
                  (padding[1][0], max(needed[1] - x.shape[2] - padding[1][0], 0)), (0, 0)))
  b = x.shape[0]
  x = x[:, :needed[0], :needed[1]].reshape(b, needed[0] // stride, stride, needed[1] // stride,
                                           stride, c)
  x = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, needed[0] // stride, needed[1] // stride,
                                            stride * stride * c)
  kernel = kernel.reshape(taps[0] // stride, stride, taps[1] // stride, stride, c, o)
  kernel = kernel.transpose(0, 2, 1, 3, 4, 5).reshape(taps[0] // stride, taps[1] // stride,
                                                      stride * stride * c, o)
  return x, kernel


def _with_training_form(inference_fn, training_fn):
  """A function that computes inference_fn(*args) where nothing is differentiated and
  training_fn(*args) (the same values) where something is, with training_fn's gradient."""
  fn = jax.custom_vjp(inference_fn)
  fn.defvjp(lambda *args: jax.vjp(training_fn, *args), lambda vjp, g: vjp(g))
  return fn


def _strided_conv(x, kernel, stride: int, padding):
  """A stride-s convolution: through `_as_stride1` in training, and in inference too where
  the output map has at most STRIDED_MAX_PIXELS pixels (elsewhere XLA's forward convolution
  is as fast and fuses better). 4x4 stride-2 convolutions padded by one pixel go through
  `_gemm_conv_stride2` instead, in training, and in inference where their input has at most
  PATCH_INFERENCE_MAX_CHANNELS channels (XLA:CPU's forward is slow on narrow inputs, faster on
  wide ones)."""
  def rewritten(x, kernel):
    return conv_stride1(*_as_stride1(x, kernel, stride, padding), ((0, 0), (0, 0)))

  def plain(x, kernel):
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                    dimension_numbers=_NHWC)

  kh, kw, c_in = kernel.shape[:3]
  pixels = math.prod((n + sum(p) - k) // stride + 1
                     for n, p, k in zip(x.shape[1:3], padding, (kh, kw)))
  inference = rewritten if pixels <= STRIDED_MAX_PIXELS else plain
  if ((kh, kw, stride) == (4, 4, 2) and padding == ((1, 1), (1, 1))
      and x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0):  # e.g. the VAE encoder's
    if c_in <= PATCH_INFERENCE_MAX_CHANNELS:
      return _gemm_conv_stride2(x, kernel)
    return _with_training_form(inference, _gemm_conv_stride2)(x, kernel)
  return _with_training_form(inference, rewritten)(x, kernel)


def _live_taps(size: int, taps: int, stride: int, padding) -> tuple[int, int, tuple]:
  """(first, end, padding') of the kernel taps along one axis that read an input pixel for
  some output, and the padding that keeps the output size once the others are dropped; all
  taps where none can be dropped. E.g. a 3x3 'SAME' kernel on a 1x1 map: only its centre."""
  low, high = padding
  out = (size + low + high - taps) // stride + 1
  first, end = max(0, low - (out - 1) * stride), min(taps, low + size)
  new_high = (out - 1) * stride + end - first - size - (low - first)
  if min(low, high, new_high) < 0 or end <= first or (first, end) == (0, taps):
    return 0, taps, padding
  return first, end, (low - first, new_high)


def _rewritten_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                    dimension_numbers=None, feature_group_count=1, precision=None):
  """`lax.conv_general_dilated`'s signature: undilated, ungrouped 2-D NHWC convolutions with
  equal strides as `conv_stride1` (strided ones through `_strided_conv`), XLA's own
  convolution for everything else. Kernel taps that read only padding are dropped first
  (ResNet-50's ImageNet stem: its last stage's 3x3 convolutions on 1x1 maps are 1x1 ones)."""
  stride = window_strides[0]
  if (lhs.ndim == 4 and feature_group_count == 1 and tuple(window_strides) == (stride,) * 2
      and all(d is None or math.prod(d) == 1 for d in (lhs_dilation, rhs_dilation))
      and dimension_numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)):
    if isinstance(padding, str):
      padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    padding = tuple(tuple(int(p) for p in pair) for pair in padding)
    (top, bottom, rows), (left, right, columns) = (
        _live_taps(lhs.shape[1 + axis], rhs.shape[axis], stride, padding[axis]) for axis in (0, 1))
    rhs, padding = rhs[top:bottom, left:right], (rows, columns)
    if stride == 1:
      return conv_stride1(lhs, rhs, padding)
    return _strided_conv(lhs, rhs, stride, padding)
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                  rhs_dilation, dimension_numbers, feature_group_count,
                                  precision=precision)


def conv_general_dilated_for(impl: str):
  """The `conv_general_dilated` for flax's nn.Conv under policy `impl`; None means XLA's own."""
  return _rewritten_conv if backend.rewrites_layers(impl) else None


# 4x4 stride-2 convolutions padded by one pixel (SAME on even maps) and their transposes, as
# products over all 16 taps at once. The transposed convolution sends input pixel n to output
# 2n - 1 + t through kernel tap 3 - t (t = 0..3 per axis); output phase p (pixels 2i + p) gathers
# the products of inputs i + d - 1 through taps t for these (d, t):
_PHASE_TAPS = (((0, 3), (1, 1)), ((1, 2), (2, 0)))
# Taps in "block order": (t // 2, u // 2, t % 2, u % 2), so that the patches of a map are 2x2
# blocks of 2x2 pixels stacked without a transpose; entry k is the row-major t * 4 + u of tap k.
_BLOCK_TAPS = tuple((2 * a + r) * 4 + 2 * c + s
                    for a in range(2) for c in range(2) for r in range(2) for s in range(2))
_UNBLOCK_TAPS = tuple(_BLOCK_TAPS.index(i) for i in range(16))


def _block_order(kernel, axis: int):
  """The 4x4 taps at `axis`, `axis + 1` of `kernel` as one axis of 16 in block order."""
  flat = kernel.reshape(kernel.shape[:axis] + (16,) + kernel.shape[axis + 2:])
  return jnp.take(flat, jnp.array(_BLOCK_TAPS), axis=axis)


def _from_block_order(taps, axis: int):
  """The inverse of `_block_order`."""
  flat = jnp.take(taps, jnp.array(_UNBLOCK_TAPS), axis=axis)
  return flat.reshape(taps.shape[:axis] + (4, 4) + taps.shape[axis + 1:])


def _col2im(z):
  """z [b, h, w, 16, O] (each input pixel's product with the 16 taps, block order) ->
  y [b, 2h, 2w, O]: y[2n - 1 + t, 2m - 1 + u] = sum of z[n, m, (t, u)]."""
  b, h, w, _, o = z.shape
  zero = jnp.zeros((), z.dtype)

  def term(d, e, t, u):  # z[n + d - 1, m + e - 1, (t, u)], 0 outside (a pad that fuses)
    return lax.pad(z[:, :, :, _UNBLOCK_TAPS[t * 4 + u]], zero,
                   ((0, 0, 0), (1 - d, d - 1, 0), (1 - e, e - 1, 0), (0, 0, 0)))

  phases = [[functools.reduce(jnp.add, [term(d, e, t, u) for d, t in _PHASE_TAPS[p]
                                        for e, u in _PHASE_TAPS[q]])
             for q in range(2)] for p in range(2)]
  y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # [b, h, 2, w, 2, O]
  return y.reshape(b, 2 * h, 2 * w, o)


def _patches(x):
  """x [b, 2h, 2w, C] -> [b, h, w, 16, C]: x[2n - 1 + t, 2m - 1 + u] (0 outside), block order,
  i.e. the 4x4 patch of each output of a 4x4 stride-2 convolution padded by one pixel."""
  b, h2, w2, c = x.shape
  h, w = h2 // 2, w2 // 2
  blocks = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(b, h + 1, 2, w + 1, 2, c)
  blocks = blocks.transpose(0, 1, 3, 2, 4, 5)  # [b, h + 1, w + 1, t % 2, u % 2, C]
  patches = jnp.stack([blocks[:, a:a + h, d:d + w] for a in range(2) for d in range(2)], axis=3)
  return patches.reshape(b, h, w, 16, c)


def _patch_gradient(other, patches):
  """sum over images and pixels of other[..., i] * patches[..., k, j], as [16, i, j] (the kernel
  gradient of a patch product). The smaller operand goes first: XLA transposes that one."""
  accumulate = jnp.promote_types(other.dtype, jnp.float32)
  if other.shape[-1] < 16 * patches.shape[-1]:
    return jnp.einsum("bhwi,bhwkj->ikj", other, patches,
                      preferred_element_type=accumulate).transpose(1, 0, 2)
  return jnp.einsum("bhwkj,bhwi->kij", patches, other, preferred_element_type=accumulate)


def _transposed_taps(kernel):
  """A transposed convolution's kernel as [16, C, O] taps in block order: tap t of an axis is
  kernel index 3 - t."""
  return _block_order(kernel[::-1, ::-1], 0)


@jax.custom_vjp
def _gemm_conv_transpose(x, kernel):
  """nn.ConvTranspose(features, (4, 4), (2, 2), 'SAME') without its bias: one product of every
  input pixel with all 16 taps, then each output sums the four products that reach it."""
  return _col2im(jnp.einsum("bhwc,kco->bhwko", x, _transposed_taps(kernel)))


def _gemm_conv_transpose_forward(x, kernel):
  return _gemm_conv_transpose(x, kernel), (x, kernel)


def _gemm_conv_transpose_backward(residuals, g):
  """Both gradients from one patch array of g (kept in memory once: XLA would otherwise build
  it again inside each product's fusion, which is slower): dx = patches . taps and
  dkernel = x^T . patches."""
  x, kernel = residuals
  patches = lax.optimization_barrier(_patches(g))
  dx = jnp.einsum("bhwko,kco->bhwc", patches, _transposed_taps(kernel))
  dk = _patch_gradient(x, patches)  # [16, c, o]
  return dx, _from_block_order(dk, 0)[::-1, ::-1].astype(kernel.dtype)


_gemm_conv_transpose.defvjp(_gemm_conv_transpose_forward, _gemm_conv_transpose_backward)


@jax.custom_vjp
def _gemm_conv_stride2(x, kernel):
  """A 4x4, stride-2 convolution padded by one pixel on each side (SAME on even maps), the
  adjoint of `_gemm_conv_transpose`: each output's 4x4 input patch times the kernel."""
  return _gemm_conv_stride2_forward(x, kernel)[0]


def _gemm_conv_stride2_forward(x, kernel):
  patches = _patches(x)  # kept for the kernel gradient rather than built again
  return jnp.einsum("bhwkc,kco->bhwo", patches, _block_order(kernel, 0)), (patches, kernel)


def _gemm_conv_stride2_backward(residuals, g):
  patches, kernel = residuals
  dx = _col2im(jnp.einsum("bhwo,kco->bhwkc", g, _block_order(kernel, 0)))
  dk = _patch_gradient(g, patches).transpose(0, 2, 1)  # [16, o, c] -> [16, c, o]
  return dx, _from_block_order(dk, 0).astype(kernel.dtype)


_gemm_conv_stride2.defvjp(_gemm_conv_stride2_forward, _gemm_conv_stride2_backward)


class ConvTranspose2x(nn.Module):
  """A 4x4, stride-2, 'SAME' transposed convolution (doubles height and width) with the
  parameters, initialisation and outputs of nn.ConvTranspose(features, (4, 4), (2, 2),
  padding='SAME'); one product and a sum of shifted slices (`_gemm_conv_transpose`) where
  policy `impl` rewrites (module docstring)."""
  features: int
  dtype: Any = jnp.float32
  impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (4, 4, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    if backend.rewrites_layers(self.impl):
      return _gemm_conv_transpose(x, kernel) + bias
    return lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=_NHWC) + bias


def _pool_windows(x):
  """[b, h, w, c] -> [b, h/2, w/2, 4, c]: each 2x2 window's pixels in row-major order."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(
      b, h // 2, w // 2, 4, c)


def _xla_max_pool(x):
  return nn.max_pool(x, (2, 2), strides=(2, 2))


@jax.custom_vjp
def _first_max_pool(x):
  return jnp.max(_pool_windows(x), axis=3)


def _pool_forward(x):
  y = _first_max_pool(x)
  return y, (x, y)


def _pool_backward(residuals, g):
  """The gradient goes to each window's first maximum in row-major order, as XLA's
  select-and-scatter (the gradient of lax.reduce_window max) sends it."""
  x, y = residuals
  hits = _pool_windows(x) == y[:, :, :, None, :]
  first = hits & (jnp.cumsum(hits, axis=3) == 1)
  dx = jnp.where(first, g[:, :, :, None, :], jnp.zeros((), g.dtype))
  b, h, w, c = x.shape
  return (dx.reshape(b, h // 2, w // 2, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(x.shape),)


_first_max_pool.defvjp(_pool_forward, _pool_backward)


def max_pool_2x2(x, impl: str):
  """nn.max_pool(x, (2, 2), strides=(2, 2)) ('VALID'); its gradient rewritten under policy
  `impl` where height and width are even."""
  if backend.rewrites_layers(impl) and x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0:
    # inference keeps XLA's pooling, which fuses with what precedes it (faster there)
    return _with_training_form(_xla_max_pool, _first_max_pool)(x)
  return _xla_max_pool(x)
