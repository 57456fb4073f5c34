"""PyTorch versions of align_jax's PhilNet, ResNet-50 (both stems) and VAE: the reference side of
benchmarks/train_bench.py. Same layers, widths, strides, padding, initial BatchNorm scales and
losses as align_jax/models; written as a PyTorch user of the original study would (NCHW).
"""

import torch
from torch import nn
from torch.nn import functional as F


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
  return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, momentum=0.1),
          nn.ReLU(inplace=True)]


class PhilNet(nn.Module):
  """Blocks (32, 64), (128, 256), (512,) of 3x3 conv + BN + ReLU, each block ending in a 2x2
  max-pool; global average pool, Dropout 0.4, a linear head."""

  def __init__(self, num_classes: int = 10):
    super().__init__()
    layers, cin = [], 3
    for widths in ((32, 64), (128, 256), (512,)):
      for width in widths:
        layers += _conv_bn_relu(cin, width)
        cin = width
      layers.append(nn.MaxPool2d(2))
    self.features = nn.Sequential(*layers)
    self.dropout = nn.Dropout(0.4)
    self.head = nn.Linear(512, num_classes)

  def forward(self, x):
    return self.head(self.dropout(self.features(x).mean((2, 3))))


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand x4; the last BatchNorm's scale starts at zero."""

  def __init__(self, cin: int, filters: int, stride: int):
    super().__init__()
    cout = filters * 4
    self.body = nn.Sequential(
        nn.Conv2d(cin, filters, 1, bias=False), nn.BatchNorm2d(filters), nn.ReLU(inplace=True),
        nn.Conv2d(filters, filters, 3, stride, padding=1, bias=False), nn.BatchNorm2d(filters),
        nn.ReLU(inplace=True), nn.Conv2d(filters, cout, 1, bias=False), nn.BatchNorm2d(cout))
    nn.init.zeros_(self.body[-1].weight)
    self.shortcut = nn.Identity()
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                    nn.BatchNorm2d(cout))

  def forward(self, x):
    return F.relu(self.shortcut(x) + self.body(x))


class ResNet50(nn.Module):
  """Stages of (3, 4, 6, 3) bottlenecks at widths 64-512; stem 'cifar' (3x3 conv) or
  'imagenet' (7x7 stride-2 conv + 3x3 stride-2 max-pool)."""

  def __init__(self, stem: str = "cifar", num_classes: int = 10):
    super().__init__()
    if stem == "cifar":
      layers = [nn.Conv2d(3, 64, 3, padding=1, bias=False)]
    else:
      layers = [nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)]
    layers += [nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
    if stem != "cifar":
      layers.append(nn.MaxPool2d(3, 2, padding=1))
    cin = 64
    for stage, blocks in enumerate((3, 4, 6, 3)):
      for i in range(blocks):
        filters = 64 * 2 ** stage
        layers.append(Bottleneck(cin, filters, 2 if stage > 0 and i == 0 else 1))
        cin = filters * 4
    self.features = nn.Sequential(*layers)
    self.head = nn.Linear(2048, num_classes)

  def forward(self, x):
    return self.head(self.features(x).mean((2, 3)))


class VAE(nn.Module):
  """Strided 4x4 convs 3 -> 32 -> 64 -> 128 (32 -> 4 pixels), dense mean/log-variance heads of
  256 dimensions, dense -> [128, 4, 4] -> transposed convs back to 3 x 32 x 32 -> sigmoid."""

  def __init__(self, latent_dim: int = 256, widths=(32, 64, 128)):
    super().__init__()
    chans = (3,) + tuple(widths)
    self.encoder = nn.ModuleList(nn.Conv2d(a, b, 4, 2, padding=1)
                                 for a, b in zip(chans[:-1], chans[1:]))
    flat = widths[-1] * 16
    self.mean_head, self.logvar_head = nn.Linear(flat, latent_dim), nn.Linear(flat, latent_dim)
    self.decoder_input = nn.Linear(latent_dim, flat)
    back = tuple(widths[::-1]) + (3,)
    self.decoder = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, 2, padding=1)
                                 for a, b in zip(back[:-1], back[1:]))
    self.widths = widths

  def forward(self, x):
    for conv in self.encoder:
      x = F.leaky_relu(conv(x), 0.2)
    x = x.flatten(1)
    mean, logvar = self.mean_head(x), self.logvar_head(x)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if self.training else mean
    y = F.leaky_relu(self.decoder_input(z), 0.2).view(-1, self.widths[-1], 4, 4)
    for conv in self.decoder[:-1]:
      y = F.leaky_relu(conv(y), 0.2)
    return torch.sigmoid(self.decoder[-1](y)), mean, logvar


def vae_loss(output, images):
  """L1 reconstruction summed per image + KL(q(z|x) || N(0, I)), averaged over the batch."""
  reconstruction, mean, logvar = output
  recon = (reconstruction - images).abs().flatten(1).sum(1)
  kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(1)
  return (recon + kl).mean()
