"""Train the MNIST feature network that ``fid`` and ``accuracy`` ship with (seeded, CPU, ~2 min).

    python plugins/metrics/scripts/train_feature_net.py [--steps 3000]

Reads the 4,500 training digits shipped with difftk-datasets, trains with random shifts of up
to 2 pixels (AdamW, batch 128), reports accuracy on the 500 test digits, and writes
``src/difftk_metrics/data/mnist_features.safetensors``.
"""

from __future__ import annotations

import argparse
import time

import difftk
import torch
import torch.nn.functional as F
from difftk.runtime.files import atomic_write_bytes
from difftk_metrics.network import WEIGHTS, MnistFeatureNet
from safetensors.torch import save


def shift(x: torch.Tensor, g: torch.Generator, pixels: int = 2) -> torch.Tensor:
    """Each image moved by up to ``pixels`` in x and y (zero padding = background −1)."""
    padded = F.pad(x, (pixels,) * 4, value=-1.0)
    out = torch.empty_like(x)
    offsets = torch.randint(0, 2 * pixels + 1, (len(x), 2), generator=g)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy:dy + 28, dx:dx + 28]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    mnist = difftk.create("dataset", "mnist")
    train, test = mnist.load("train"), mnist.load("test")
    net = MnistFeatureNet()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    start = time.time()
    for step in range(1, args.steps + 1):
        x, y = train.batch(torch.randint(0, len(train), (128,), generator=g))
        loss = F.cross_entropy(net(shift(x, g)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0:
            print(f"step {step}: loss {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)
    net.eval()
    with torch.no_grad():
        x, y = test.batch(torch.arange(len(test)))
        accuracy = (net(x).argmax(1) == y).float().mean().item()
    print(f"test accuracy {accuracy:.4f} on {len(test)} held-out digits; {time.time() - start:.0f} s")
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    atomic_write_bytes(WEIGHTS, save(state, metadata={"test_accuracy": f"{accuracy:.4f}", "steps": str(args.steps),
                                                      "seed": str(args.seed)}))
    print(f"wrote {WEIGHTS}")


if __name__ == "__main__":
    main()
