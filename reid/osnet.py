"""OSNet (Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification", ICCV 2019).

Module names and tensor shapes are those of Torchreid's ``torchreid/models/osnet.py``, so every
Torchreid model-zoo state dict (``osnet_x1_0_msmt17.pth``, ...) loads with ``load_state_dict``.
Widths: x1_0 (channels 64/256/384/512), x0_75, x0_5, x0_25 (16/64/96/128), and ibn_x1_0
(instance norm in conv1/conv2). ``featuremaps`` is the conv5 map: channels[3] x H/16 x W/16
(128 x 16 x 8 for x0_25 at 256x128); ``forward`` in eval mode is Torchreid's embedding
GAP(conv5) -> fc (Linear + BatchNorm1d + ReLU) of ``feature_dim`` (512).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

OSNET_CHANNELS = {
    "osnet_x1_0": (64, 256, 384, 512),
    "osnet_x0_75": (48, 192, 288, 384),
    "osnet_x0_5": (32, 128, 192, 256),
    "osnet_x0_25": (16, 64, 96, 128),
    "osnet_ibn_x1_0": (64, 256, 384, 512),
}
OSNET_FEATURE_DIM = 512  # Torchreid's fc output, the same for every width


class ConvLayer(nn.Module):
    """conv + bn (or instance norm) + relu."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, IN: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False,
                              groups=groups)
        self.bn = nn.InstanceNorm2d(out_channels, affine=True) if IN else nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Conv1x1(nn.Module):
    """1x1 convolution + bn + relu."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, padding=0, bias=False, groups=groups)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Conv1x1Linear(nn.Module):
    """1x1 convolution + bn, no non-linearity."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class LightConv3x3(nn.Module):
    """1x1 (linear) + depthwise 3x3 (+ bn + relu)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False, groups=out_channels)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Module):
    """The aggregation gate shared by the four streams: GAP -> fc1 -> relu -> fc2 -> sigmoid, times input."""

    def __init__(self, in_channels: int, reduction: int = 16):
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(in_channels, in_channels // reduction, kernel_size=1, bias=True, padding=0)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(in_channels // reduction, in_channels, kernel_size=1, bias=True, padding=0)
        self.gate_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.gate_activation(self.fc2(self.relu(self.fc1(self.global_avgpool(x)))))
        return x * gates


class OSBlock(nn.Module):
    """Omni-scale block: four streams of 1, 2, 3, 4 LightConv3x3, gated and summed, + residual."""

    def __init__(self, in_channels: int, out_channels: int, IN: bool = False, bottleneck_reduction: int = 4):
        super().__init__()
        mid = out_channels // bottleneck_reduction
        self.conv1 = Conv1x1(in_channels, mid)
        self.conv2a = LightConv3x3(mid, mid)
        self.conv2b = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(2)))
        self.conv2c = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(3)))
        self.conv2d = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(4)))
        self.gate = ChannelGate(mid)
        self.conv3 = Conv1x1Linear(mid, out_channels)
        self.downsample = Conv1x1Linear(in_channels, out_channels) if in_channels != out_channels else None
        self.IN = nn.InstanceNorm2d(out_channels, affine=True) if IN else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        streams = (self.conv2a(x1), self.conv2b(x1), self.conv2c(x1), self.conv2d(x1))
        x3 = self.conv3(sum(self.gate(s) for s in streams))
        identity = x if self.downsample is None else self.downsample(x)
        out = x3 + identity
        if self.IN is not None:
            out = self.IN(out)
        return F.relu(out)


class OSNet(nn.Module):
    """Torchreid's OSNet: conv1, maxpool, conv2-4 (two OSBlocks each; conv2/conv3 end with 1x1 + avgpool 2),
    conv5 (1x1), GAP, fc, classifier."""

    def __init__(self, channels: tuple[int, int, int, int], num_classes: int = 1000, IN: bool = False,
                 feature_dim: int = OSNET_FEATURE_DIM, layers: tuple[int, int, int] = (2, 2, 2)):
        super().__init__()
        self.feature_dim = feature_dim
        self.conv1 = ConvLayer(3, channels[0], 7, stride=2, padding=3, IN=IN)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = _make_layer(layers[0], channels[0], channels[1], reduce_spatial_size=True, IN=IN)
        self.conv3 = _make_layer(layers[1], channels[1], channels[2], reduce_spatial_size=True)
        self.conv4 = _make_layer(layers[2], channels[2], channels[3], reduce_spatial_size=False)
        self.conv5 = Conv1x1(channels[3], channels[3])
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels[3], feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(feature_dim, num_classes)
        self._init_params()

    def _init_params(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.InstanceNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def trunk(self) -> nn.Sequential:
        """conv1 ... conv5 as six indexable stages (shares the modules): image -> conv5 map."""
        return nn.Sequential(self.conv1, self.maxpool, self.conv2, self.conv3, self.conv4, self.conv5)

    def featuremaps(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedding = self.fc(self.global_avgpool(self.featuremaps(x)).flatten(1))
        return embedding if not self.training else self.classifier(embedding)


def _make_layer(layer: int, in_channels: int, out_channels: int, reduce_spatial_size: bool, IN: bool = False
                ) -> nn.Sequential:
    blocks: list[nn.Module] = [OSBlock(in_channels, out_channels, IN=IN)]
    blocks += [OSBlock(out_channels, out_channels, IN=IN) for _ in range(1, layer)]
    if reduce_spatial_size:
        blocks.append(nn.Sequential(Conv1x1(out_channels, out_channels), nn.AvgPool2d(2, stride=2)))
    return nn.Sequential(*blocks)


def osnet(name: str, num_classes: int = 1000) -> OSNet:
    """An OSNet of the given Torchreid name (``osnet_x0_25``, ...), randomly initialised."""
    if name not in OSNET_CHANNELS:
        raise ValueError(f"unknown OSNet {name!r}; choose one of {sorted(OSNET_CHANNELS)}")
    return OSNet(OSNET_CHANNELS[name], num_classes=num_classes, IN=name == "osnet_ibn_x1_0")
