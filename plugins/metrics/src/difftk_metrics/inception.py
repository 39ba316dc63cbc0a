"""Inception-v3 in the variant FID is defined with (Szegedy et al. 2016, "Rethinking the Inception
Architecture"; Heusel et al. 2017), reading the state dicts pytorch-fid and torch-fidelity distribute.

The network is the TensorFlow graph ``inception-2015-12-05`` that the FID and Inception Score
papers used, which differs from torchvision's Inception-v3 in three ways: a 1008-way classifier,
average pools that ignore the zero padding (TensorFlow's), and a max pool in the pooling branch
of the last block. pool3, the 2048-d global average of the last block, is the FID feature; the
logits of the Inception Score are pool3 times the classifier's weights, without its bias, as the
Inception Score's original code (``softmax/logits/MatMul``) and torch-fidelity take them.

Module names equal the keys of both distributed files, so a file loads as it is. Images are
prepared as pytorch-fid prepares them (:func:`prepare`; docs/metrics.md says why).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: the resolution the network was trained at; every image is resized to it
SIZE = 299
FEATURES = 2048
CLASSES = 1008


class Conv(nn.Module):
    """Convolution without bias → batch norm (ε = 0.001, TensorFlow's) → ReLU."""

    def __init__(self, channels_in: int, channels: int, kernel, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def average_pool(x: torch.Tensor) -> torch.Tensor:
    """3×3 average pool, stride 1, padded, averaging over the pixels inside the image only (TensorFlow's)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class MixedA(nn.Module):
    """The 35×35 module (Fig. 5): 1×1, 5×5, two stacked 3×3, and a pooled 1×1 branch."""

    def __init__(self, channels_in: int, pool_channels: int) -> None:
        super().__init__()
        self.branch1x1 = Conv(channels_in, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = Conv(channels_in, 48, 1), Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = Conv(channels_in, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = Conv(64, 96, 3, padding=1), Conv(96, 96, 3, padding=1)
        self.branch_pool = Conv(channels_in, pool_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(average_pool(x))], dim=1)


class ReductionB(nn.Module):
    """35×35 → 17×17 (Fig. 10): a strided 3×3, a strided double 3×3, and a strided max pool."""

    def __init__(self, channels_in: int) -> None:
        super().__init__()
        self.branch3x3 = Conv(channels_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = Conv(channels_in, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = Conv(64, 96, 3, padding=1), Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], dim=1)


class MixedC(nn.Module):
    """The 17×17 module (Fig. 6): n×n convolutions factorised into 1×7 and 7×1, once and twice."""

    def __init__(self, channels_in: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = Conv(channels_in, 192, 1)
        self.branch7x7_1 = Conv(channels_in, c7, 1)
        self.branch7x7_2 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = Conv(channels_in, c7, 1)
        self.branch7x7dbl_2 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = Conv(channels_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = conv(double)
        return torch.cat([self.branch1x1(x), single, double, self.branch_pool(average_pool(x))], dim=1)


class ReductionD(nn.Module):
    """17×17 → 8×8: a strided 3×3 after a 1×1, a strided 3×3 after a factorised 7×7, and a strided max pool."""

    def __init__(self, channels_in: int) -> None:
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = Conv(channels_in, 192, 1), Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = Conv(channels_in, 192, 1)
        self.branch7x7x3_2 = Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], dim=1)


class MixedE(nn.Module):
    """The 8×8 module with expanded filter banks (Fig. 7): 3×3 outputs split into parallel 1×3 and 3×1.
    ``max_pool``: the pooling branch max-pools (the last module of the FID graph) instead of averaging."""

    def __init__(self, channels_in: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = Conv(channels_in, 320, 1)
        self.branch3x3_1 = Conv(channels_in, 384, 1)
        self.branch3x3_2a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(channels_in, 448, 1), Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = Conv(channels_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else average_pool(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(s), self.branch3x3_2b(s),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pooled)], dim=1)


class InceptionV3(nn.Module):
    """The FID Inception-v3: [B, 3, 299, 299] images in [−1, 1] -> (pool3 [B, 2048], logits [B, 1008])."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = MixedA(192, 32), MixedA(256, 64), MixedA(288, 64)
        self.Mixed_6a = ReductionB(288)
        self.Mixed_6b, self.Mixed_6c = MixedC(768, 128), MixedC(768, 160)
        self.Mixed_6d, self.Mixed_6e = MixedC(768, 160), MixedC(768, 192)
        self.Mixed_7a = ReductionD(768)
        self.Mixed_7b, self.Mixed_7c = MixedE(1280, max_pool=False), MixedE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURES, CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)  # 147 → 73
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)  # 71 → 35
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        pool3 = x.mean(dim=(2, 3))
        return pool3, pool3 @ self.fc.weight.T  # the Inception Score's logits: no bias


def prepare(images: torch.Tensor) -> torch.Tensor:
    """Images [B, 1 or 3, H, W] in [−1, 1] -> the network's input [B, 3, 299, 299], as pytorch-fid makes it
    from image files: quantised to 8 bits (as a PNG stores them), scaled to [0, 1], grey repeated to RGB
    (as PIL's convert("RGB") does), resized bilinearly to 299×299 (align_corners=False, no antialiasing)
    and scaled to [−1, 1]."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round() / 255
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return 2 * x - 1
