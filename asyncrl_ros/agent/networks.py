"""Networks of pixel SAC (thesis Table 5.3): spatial-softmax conv encoder, tanh-Gaussian actor, twin Q critic."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0


def weight_init(m: nn.Module) -> None:
    """Orthogonal init for linear layers, delta-orthogonal for convs (as in SAC-AE / ReLoD)."""
    if isinstance(m, nn.Linear):
        nn.init.orthogonal_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        # Delta-orthogonal (Xiao et al. 2018): only the kernel centre is non-zero at init.
        nn.init.zeros_(m.weight)
        nn.init.zeros_(m.bias)
        mid = m.weight.shape[2] // 2
        nn.init.orthogonal_(m.weight[:, :, mid, mid], nn.init.calculate_gain("relu"))


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """3-layer MLP: in -> hidden -> hidden -> out."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(),
                         nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                         nn.Linear(hidden_dim, out_dim))


class SpatialSoftmax(nn.Module):
    """Softmax over each channel's pixels, then the expected (x, y) in [-1, 1]: (B,C,H,W) -> (B,2C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fp32 under bf16 autocast too: the keypoints are all the heads see of the image, and
        # bf16's 8-bit mantissa would quantise them to steps of ~1/128.
        x = x.float()
        b, c, h, w = x.shape
        attention = F.softmax(x.flatten(2), dim=-1).view(b, c, h, w)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        expected_x = (attention.sum(dim=2) * xs).sum(dim=-1)
        expected_y = (attention.sum(dim=3) * ys).sum(dim=-1)
        return torch.cat([expected_x, expected_y], dim=1)


class Encoder(nn.Module):
    """uint8 stacked frames -> keypoint features; convs 3x3, strides 2,2,2,1,... then spatial softmax."""

    # oneDNN's CPU convolutions run 1.4-1.6x as fast on channels-last input as on NCHW here
    # (bench/bench_encoder_layout.py), the same maths; an instance may set torch.contiguous_format.
    memory_format = torch.channels_last

    def __init__(self, in_channels: int, num_filters: int, num_layers: int):
        super().__init__()
        self.strides = [2 if i < 3 else 1 for i in range(num_layers)]
        layers, channels = [], in_channels
        for stride in self.strides:
            # In place: a conv's backward needs its input, not its output, so the ReLU may
            # overwrite it (one activation-sized allocation fewer per layer).
            layers += [nn.Conv2d(channels, num_filters, 3, stride=stride), nn.ReLU(inplace=True)]
            channels = num_filters
        self.convs = nn.Sequential(*layers)
        self.spatial_softmax = SpatialSoftmax()
        self.feature_dim = 2 * num_filters
        self.apply(weight_init)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        """Spatial size of the last conv map for an (h, w) input (unpadded 3x3 convs)."""
        for stride in self.strides:
            h, w = (h - 3) // stride + 1, (w - 3) // stride + 1
        return h, w

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Scaling here keeps replay and transport in uint8; copy=True so that the in-place
        # scaling never touches a caller's float tensor.
        x = images.to(torch.float32, memory_format=self.memory_format, copy=True).mul_(1.0 / 255.0)
        return self.spatial_softmax(self.convs(x))


class Actor(nn.Module):
    """MLP head on (encoder features, proprioception) -> mean and bounded log std of a tanh-Gaussian."""

    def __init__(self, feature_dim: int, proprio_dim: int, action_dim: int, hidden_dim: int):
        super().__init__()
        self.trunk = mlp(feature_dim + proprio_dim, hidden_dim, 2 * action_dim)
        self.apply(weight_init)

    def forward(self, features: torch.Tensor, proprio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # .float(): under bf16 autocast the head is bf16; sampling and log-probs need fp32.
        mu, log_std = self.trunk(torch.cat([features, proprio], dim=-1)).float().chunk(2, dim=-1)
        # Smooth bound (SAC-AE) instead of clamp, so log_std keeps a gradient at the limits.
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1.0)
        return mu, log_std


def squashed_gaussian_sample(mu: torch.Tensor, log_std: torch.Tensor,
                             noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised tanh-Gaussian sample and its log-probability (summed over action dims)."""
    u = mu + log_std.exp() * noise
    action = torch.tanh(u)
    gaussian_log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    # log(1 - tanh(u)^2) in a form that does not blow up when |u| is large.
    log_det = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
    return action, gaussian_log_prob - log_det


class Critic(nn.Module):
    """Twin Q heads on (encoder features, proprioception, action) -> (q1, q2), each (B,)."""

    def __init__(self, feature_dim: int, proprio_dim: int, action_dim: int, hidden_dim: int):
        super().__init__()
        in_dim = feature_dim + proprio_dim + action_dim
        self.q1, self.q2 = mlp(in_dim, hidden_dim, 1), mlp(in_dim, hidden_dim, 1)
        self.apply(weight_init)

    def forward(self, features: torch.Tensor, proprio: torch.Tensor,
                action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([features, proprio, action], dim=-1)
        # fp32 Q values under bf16 autocast too, so that targets and losses are computed in fp32.
        return self.q1(x).float().squeeze(-1), self.q2(x).float().squeeze(-1)
