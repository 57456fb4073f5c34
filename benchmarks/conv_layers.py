"""Per-layer times of stride-1 convolutions: align_jax's rewrites against XLA's and PyTorch's.

For each layer (map size, channels in -> out) at --batch_size, the three parts of a train
step's convolution, each jitted on its own: the forward pass (as in training), the input
gradient and the kernel gradient, under
  xla        XLA's own convolution and its gradients (layer_impl='xla')
  direct     the rewrites of align_jax/models/layers.py without Winograd's form (patch
             matrices, shifted products, XLA's convolution; WINOGRAD_MIN_CHANNELS out of reach)
  winograd   what layer_impl='auto' does on a CPU now (3x3 kernels only; for 1x1 kernels,
             where there is no Winograd form, 'direct' is what 'auto' does)
and PyTorch's forward + both gradients of the same convolution (NCHW) where it is installed.
All take turns in one process; medians of --repeats, milliseconds. Kernels are 3x3 with
'SAME' padding (PhilNet's layers by default) or 1x1 (--kernel_size=1, e.g. ResNet-50's
bottlenecks: --layers=32x256x64,32x64x256,16x512x128,8x256x1024).

  python benchmarks/conv_layers.py
  python benchmarks/conv_layers.py --layers=16x128x256 --repeats=11
  python benchmarks/conv_layers.py --kernel_size=1 --layers=32x256x64,32x64x256
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

PHILNET_LAYERS = "32x32x64,16x64x128,16x128x256,8x256x512"  # map x c_in x c_out


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split("\n\n", 1)[1])
  parser.add_argument("--layers", default=PHILNET_LAYERS,
                      help=f"comma-separated MAPxC_INxC_OUT (default PhilNet's: {PHILNET_LAYERS})")
  parser.add_argument("--batch_size", type=int, default=128, help="images (default 128)")
  parser.add_argument("--repeats", type=int, default=7, help="timed turns (default 7)")
  parser.add_argument("--kernel_size", type=int, default=3, choices=(1, 3),
                      help="3 (3x3, padded by one pixel; default) or 1 (1x1, unpadded)")
  parser.add_argument("--no_torch", action="store_true", help="leave PyTorch out")
  args = parser.parse_args(argv)
  try:
    args.layers = [tuple(int(n) for n in layer.split("x")) for layer in args.layers.split(",")]
  except ValueError:
    parser.error(f"bad --layers {args.layers!r}: use MAPxC_INxC_OUT, e.g. 16x128x256")
  if any(len(layer) != 3 or min(layer) < 1 for layer in args.layers) or min(
      args.batch_size, args.repeats) < 1:
    parser.error("each layer needs three positive numbers; batch_size and repeats must be >= 1")
  return args


def _parts(layers, kernel_shape, padding):
  """Jitted (forward, input gradient, kernel gradient) of the rewrites; they read
  layers.WINOGRAD_MIN_CHANNELS when they are traced, i.e. at their first call."""
  import jax  # pylint: disable=g-import-not-at-top
  # pylint: disable=protected-access
  return {"forward": jax.jit(lambda x, w: layers._conv_in_fastest_form(x, w, padding, True)),
          "input gradient": jax.jit(lambda g, w: layers._input_gradient(g, w, padding)),
          "kernel gradient": jax.jit(lambda x, g: layers.kernel_gradient(x, g, kernel_shape,
                                                                         padding))}


def _xla_parts(x, w, padding):
  """The same three parts from XLA's convolution and jax.vjp."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax import lax  # pylint: disable=g-import-not-at-top
  conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), padding,
                                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return {"forward": jax.jit(conv),
          "input gradient": jax.jit(lambda g, w: jax.vjp(lambda x_: conv(x_, w), x)[1](g)[0]),
          "kernel gradient": jax.jit(lambda x, g: jax.vjp(lambda w_: conv(x, w_), w)[1](g)[0])}


def _torch_step(x, w, g, pad: int):
  import torch  # pylint: disable=g-import-not-at-top
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
  wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
  gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy())

  def step():
    y = torch.nn.functional.conv2d(xt, wt, padding=pad)
    torch.autograd.grad(y, (xt, wt), gt)
  return step


def main(argv=None) -> None:
  args = _parse_args(argv)
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from align_jax.runtime import host_memory  # pylint: disable=g-import-not-at-top
  host_memory.retain_freed_memory()
  if not args.no_torch:
    try:
      import torch  # pylint: disable=g-import-not-at-top
      torch.set_num_threads(os.cpu_count())
    except ImportError:
      print("PyTorch is not installed (pip install -e \".[bench]\"); timing align_jax alone.")
      args.no_torch = True
  import jax  # pylint: disable=g-import-not-at-top
  from align_jax.models import layers  # pylint: disable=g-import-not-at-top
  print(f"batch {args.batch_size}, {args.repeats} repeats, medians in ms; jax {jax.__version__} "
        f"on {jax.default_backend()}", flush=True)
  default_min_channels = layers.WINOGRAD_MIN_CHANNELS
  k, pad = args.kernel_size, args.kernel_size // 2
  padding = ((pad, pad), (pad, pad))
  print("| layer | form | forward | input gradient | kernel gradient | total |")
  print("|---|---|---|---|---|---|")
  for size, c_in, c_out in args.layers:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, size, size, c_in), np.float32)
    w = (rng.standard_normal((k, k, c_in, c_out)) / np.sqrt(k * k * c_in)).astype(np.float32)
    g = rng.standard_normal((args.batch_size, size, size, c_out), np.float32)
    inputs = {"forward": (x, w), "input gradient": (g, w), "kernel gradient": (x, g)}
    forms = {"xla": _xla_parts(x, w, padding)}
    for form in ("direct",) if k == 1 else ("direct", "winograd"):
      forms[form] = _parts(layers, w.shape, padding)
    for form, parts in forms.items():
      layers.WINOGRAD_MIN_CHANNELS = 1 << 30 if form == "direct" else default_min_channels
      for part, fn in parts.items():  # traced and compiled now, under this form
        jax.block_until_ready(fn(*inputs[part]))
    layers.WINOGRAD_MIN_CHANNELS = default_min_channels
    torch_step = None if args.no_torch else _torch_step(x, w, g, pad)
    times = {}
    for _ in range(args.repeats):
      for form, parts in forms.items():
        for part, fn in parts.items():
          start = time.perf_counter()
          jax.block_until_ready(fn(*inputs[part]))
          times.setdefault((form, part), []).append(time.perf_counter() - start)
      if torch_step:
        start = time.perf_counter()
        torch_step()
        times.setdefault(("pytorch", "total"), []).append(time.perf_counter() - start)
    ms = {key: 1000 * statistics.median(v) for key, v in times.items()}
    name = f"{size}x{size} {c_in}->{c_out}" + (" 1x1" if k == 1 else "")
    for form in forms:
      parts = [ms[(form, part)] for part in inputs]
      print(f"| {name} | {form} | " + " | ".join(f"{t:.1f}" for t in parts)
            + f" | {sum(parts):.1f} |", flush=True)
    if torch_step:
      print(f"| {name} | pytorch | - | - | - | {ms[('pytorch', 'total')]:.1f} |", flush=True)


if __name__ == "__main__":
  main()
