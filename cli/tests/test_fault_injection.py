"""Fault injection: `difftk train` killed with SIGKILL at random moments — during start-up, a
step or a checkpoint write — always resumes to the weights of an uninterrupted run, and leaves
no temporary file behind. Bounded: MAX_KILLS kills, then the run is let finish.

The kills are placed by the run's progress, not by the clock: a kill waits for a random number
of checkpoint commits (0 lands it in start-up), then a random fraction of a step. A clock-based
kill misses when a later run is faster than the reference (warm caches), and then no kill
lands at all."""

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


def _mtime(path):
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _kill_after(proc, checkpoint, commits, delay):
    """SIGKILL `proc` once it has committed `commits` more checkpoints and `delay` seconds more
    have passed. False when it exits first."""
    seen, count = _mtime(checkpoint), 0
    while count < commits:
        if proc.poll() is not None:
            return False
        now = _mtime(checkpoint)
        if now != seen:
            seen, count = now, count + 1
        time.sleep(0.002)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.kill()  # SIGKILL: no handler runs, no checkpoint is finished on the way out
        proc.wait()
        return True


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
    step = (time.monotonic() - start) / STEPS  # an upper bound on one step with its checkpoint write

    rng = random.Random(0)
    plan = [(0, rng.uniform(0.0, 1.0))] + [(rng.randint(1, 3), rng.uniform(0.0, step)) for _ in range(MAX_KILLS - 1)]
    rng.shuffle(plan)  # one kill in start-up (before the first commit of that run), the rest mid-run
    out, kills = tmp_path / "killed", 0
    for commits, delay in plan:
        resume = (out / "checkpoint.safetensors").exists()
        proc = subprocess.Popen(train(out, resume), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert _kill_after(proc, out / "checkpoint.safetensors", commits, delay), "the run ended before its kill"
        kills += 1
    final = subprocess.run(train(out, resume=True), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    assert kills == MAX_KILLS
    a, b = read_checkpoint(out), read_checkpoint(tmp_path / "ref")
    assert a.step == b.step == STEPS and a.tensors.keys() == b.tensors.keys()
    for name in b.tensors:
        assert torch.equal(a.tensors[name], b.tensors[name]), name
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
