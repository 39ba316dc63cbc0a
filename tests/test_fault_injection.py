"""Fault injection: `difftk train` killed with SIGKILL at random moments — during start-up, a
step or a checkpoint write — always resumes to the weights of an uninterrupted run, and leaves
no temporary file behind. Bounded: at most MAX_KILLS kills, then the run is let finish."""

import os
import random
import subprocess
import sys
import time

import torch
from difftk.checkpoint.files import read_checkpoint

DIFFTK = os.path.join(os.path.dirname(sys.executable), "difftk")
MAX_KILLS = 4
STEPS = 24


def test_sigkill_at_random_moments_always_resumes_to_the_same_weights(tmp_path):
    compose = [DIFFTK, "compose", "--schedule", "linear", "--sampler", "ddim", "--denoiser", "unet-attn", "--objective",
               "simple", "--set", "denoiser.base_channels=8", "--set", "denoiser.norm_groups=4", "--set",
               "denoiser.channel_mult=1,2", "--set", "denoiser.attention_resolutions=14", "-o", str(tmp_path / "p.toml")]
    assert subprocess.run(compose, capture_output=True).returncode == 0

    def train(out, resume=False):
        return [DIFFTK, "train", str(tmp_path / "p.toml"), "--data", "mnist", "--steps", str(STEPS), "--batch-size", "4",
                "--out", str(out), "--sample-every", "0", "--checkpoint-every", "1", "--log-every", "4",
                *(["--resume"] if resume else [])]

    start = time.monotonic()
    reference = subprocess.run(train(tmp_path / "ref"), capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-2000:]
    whole = time.monotonic() - start  # start-up and every step: the kills land anywhere in such a span

    rng = random.Random(0)
    out, kills = tmp_path / "killed", 0
    while True:
        resume = (out / "checkpoint.safetensors").exists()
        proc = subprocess.Popen(train(out, resume), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kills >= MAX_KILLS:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-2000:]
            break
        try:
            _, err = proc.communicate(timeout=rng.uniform(0.3, 1.0) * whole)
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL: no handler runs, no checkpoint is finished on the way out
            proc.communicate()
            kills += 1
            continue
        assert proc.returncode == 0, err[-2000:]
        break
    assert kills >= 1
    a, b = read_checkpoint(out), read_checkpoint(tmp_path / "ref")
    assert a.step == b.step == STEPS and a.tensors.keys() == b.tensors.keys()
    for name in b.tensors:
        assert torch.equal(a.tensors[name], b.tensors[name]), name
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
