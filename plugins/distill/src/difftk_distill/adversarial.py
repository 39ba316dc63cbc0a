"""The critic of reflow's ``adversarial`` term: a small discriminator (convolutional, for images) that tells the
teacher's samples from the student's few-step samples, trained alongside the student with the hinge loss (Lim & Ye
2017; Miyato et al. 2018), its weights and its Adam moments checkpointable as plain tensors, so that a resumed run
continues bit for bit.

The regression losses of reflow (l2, pseudo-Huber) ask each few-step sample for the teacher's sample from the
same noise; where the student cannot reach it, the best it can do is their average, which is blurred. A critic
asks for something else: that the samples, as a whole, look like the teacher's (the idea of adversarial
distillation: Sauer et al. 2023; Kim et al. 2024).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Adam's (β₁, β₂, ε) for the critic: β₁ = 0, as GANs train their critics (Karras et al. 2019 and 2020)
BETAS, EPS = (0.0, 0.99), 1e-8


class Critic(nn.Module):
    """Examples of one shape → one score each [B]. Images [C, H, W]: three strided 3×3 convolutions (32, 64, 128
    channels, LeakyReLU 0.2), the mean over positions, then a linear layer (93k weights for 1 or 3 channels, any
    H and W); any other shape: an MLP on the flattened example (two hidden layers of 128)."""

    def __init__(self, shape: tuple[int, ...], width: int = 32):
        super().__init__()
        self.shape = tuple(shape)
        if len(self.shape) == 3:
            self.convs = nn.ModuleList([
                nn.Conv2d(self.shape[0], width, 3, stride=2, padding=1),
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),
            ])
            self.out = nn.Linear(4 * width, 1)
        else:
            d = math.prod(self.shape)
            self.convs = nn.ModuleList([nn.Linear(d, 4 * width), nn.Linear(4 * width, 4 * width)])
            self.out = nn.Linear(4 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.shape) != 3:
            x = x.flatten(1)
        for layer in self.convs:
            x = F.leaky_relu(layer(x), 0.2)
        if len(self.shape) == 3:
            x = x.flatten(2).mean(-1)
        return self.out(x).squeeze(-1)


class CriticState:
    """The critic, made at its first use for the examples' shape with a seed of its own, and its Adam moments.

    :meth:`step` trains it on one batch of real and fake examples; :meth:`state_dict` / :meth:`load_state_dict`
    are the tensors a checkpoint holds (``critic.<weight>``, ``adam_m.<weight>``, ``adam_v.<weight>``,
    ``adam_step``, and the examples' ``shape``)."""

    def __init__(self, lr: float, seed: int = 0) -> None:
        self.lr, self.seed = lr, seed
        self.critic: Critic | None = None
        self.m: dict[str, torch.Tensor] = {}
        self.v: dict[str, torch.Tensor] = {}
        self.steps = 0

    def ensure(self, like: torch.Tensor) -> Critic:
        """The critic, made for examples like ``like`` at its first use (weights from ``seed``: the same every run)."""
        if self.critic is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                critic = Critic(tuple(like.shape[1:]))
            self.critic = critic.to(device=like.device, dtype=like.dtype)
            self.m = {k: torch.zeros_like(p) for k, p in self.critic.named_parameters()}
            self.v = {k: torch.zeros_like(p) for k, p in self.critic.named_parameters()}
        elif next(self.critic.parameters()).device != like.device:
            self.critic.to(like.device)
            self.m = {k: t.to(like.device) for k, t in self.m.items()}
            self.v = {k: t.to(like.device) for k, t in self.v.items()}
        return self.critic

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """The critic's score of each example [B], differentiable in the examples (not in the critic's weights)."""
        critic = self.ensure(images)
        for p in critic.parameters():
            p.requires_grad_(False)
        return critic(images)

    def step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        """One Adam step on the hinge loss mean(relu(1 − D(real))) + mean(relu(1 + D(fake))) (the second term 0
        where there are no fakes); returns the loss. Under DDP the gradient is averaged over the ranks first, so
        every rank's critic stays the same. A non-finite loss or gradient changes nothing."""
        loss, grads = self.gradient(real, fake)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            for g in grads:
                torch.distributed.all_reduce(g)
                g.div_(world)
        self.apply(grads)
        return loss

    def gradient(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        """The hinge loss of one batch and its gradient in the critic's weights (in their order)."""
        critic = self.ensure(real)
        for p in critic.parameters():
            p.requires_grad_(True)
        with torch.enable_grad():
            loss = F.relu(1 - critic(real.detach())).mean()
            if len(fake):  # a rank may have none in its batch, and still takes its part in the average
                loss = loss + F.relu(1 + critic(fake.detach())).mean()
            grads = list(torch.autograd.grad(loss, list(critic.parameters())))
        for p in critic.parameters():
            p.requires_grad_(False)
        return float(loss.detach()), grads

    def apply(self, grads: list[torch.Tensor]) -> None:
        """One Adam step of the critic with this gradient; none where it is not finite."""
        if self.critic is None or not all(bool(torch.isfinite(g).all()) for g in grads):
            return
        self.steps += 1
        b1, b2 = BETAS
        with torch.no_grad():
            for (name, p), g in zip(self.critic.named_parameters(), grads, strict=True):
                m, v = self.m[name], self.v[name]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                m_hat = m / (1 - b1**self.steps)
                v_hat = v / (1 - b2**self.steps)
                p.sub_(self.lr * m_hat / (v_hat.sqrt() + EPS))

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.critic is None:
            return {}
        state = {f"critic.{k}": p.detach().clone() for k, p in self.critic.named_parameters()}
        state |= {f"adam_m.{k}": t.clone() for k, t in self.m.items()}
        state |= {f"adam_v.{k}": t.clone() for k, t in self.v.items()}
        state["adam_step"] = torch.tensor(self.steps, dtype=torch.int64)
        state["shape"] = torch.tensor(self.critic.shape, dtype=torch.int64)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        weights = {k.removeprefix("critic."): t for k, t in state.items() if k.startswith("critic.")}
        if not weights:
            return
        if "shape" not in state or "adam_step" not in state:
            raise ValueError("the checkpoint's critic state is incomplete: its shape or Adam step is missing")
        shape = tuple(int(n) for n in state["shape"].flatten().tolist())
        if not 1 <= len(shape) <= 3 or min(shape) < 1:
            raise ValueError(f"the checkpoint's critic is for examples of shape {list(shape)}, which no data has")
        with torch.device("meta"):  # the expected weights' shapes, before anything is allocated
            expected = {k: tuple(p.shape) for k, p in Critic(shape).named_parameters()}
        if set(weights) != set(expected) or any(f"adam_{x}.{k}" not in state for x in "mv" for k in expected):
            raise ValueError("the checkpoint's critic state is incomplete: its weights or Adam moments are missing")
        for k, size in expected.items():
            for name in (f"critic.{k}", f"adam_m.{k}", f"adam_v.{k}"):
                if tuple(state[name].shape) != size:
                    raise ValueError(f"the checkpoint's critic weights do not fit its shape: {name} is "
                                     f"{list(state[name].shape)}, examples of shape {list(shape)} need {list(size)}")
        critic = Critic(shape)
        critic.load_state_dict(weights)
        self.critic = critic.to(dtype=weights["convs.0.weight"].dtype)
        self.m = {k: state[f"adam_m.{k}"].clone() for k in expected}
        self.v = {k: state[f"adam_v.{k}"].clone() for k in expected}
        self.steps = int(state["adam_step"])
