"""Bad input, as careless users and hostile files give it: every case must end in one `error:` line
(exit 2), never a traceback and never a silent success.

Runs each `difftk …` command line in this process (click's test runner, exceptions caught so a
traceback is counted, not fatal) inside a scratch directory with a tiny trained run, a corrupt
checkpoint, an edited one and a few files in the way, and prints a table by command and outcome,
then every case that did not give one clean line.

    python benchmarks/bad_input_sweep.py               # the sweep, table for docs/reliability.md
    python benchmarks/bad_input_sweep.py --show-all    # also every error line
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner
from difftk_cli.main import cli


def scratch(root: Path) -> None:
    """The files the cases refer to: a tiny run, an export, broken and edited checkpoints, a file and a directory."""
    os.chdir(root)
    ok = CliRunner().invoke(cli, ["compose", "--schedule", "linear", "--sampler", "ddim", "--denoiser", "unet-attn",
                                  "--objective", "simple", "--set", "schedule.T=50", "--set", "denoiser.base_channels=8",
                                  "--set", "denoiser.norm_groups=4", "--set", "denoiser.channel_mult=1,2",
                                  "--set", "denoiser.attention_resolutions=14", "-o", "p.toml"])
    assert ok.exit_code == 0, ok.output
    ok = CliRunner().invoke(cli, ["train", "p.toml", "--data", "mnist", "--steps", "2", "--batch-size", "4", "--out", "run",
                                  "--sample-every", "0"])
    assert ok.exit_code == 0, ok.output
    assert CliRunner().invoke(cli, ["export", "run", "-o", "m.safetensors"]).exit_code == 0
    raw = Path("m.safetensors").read_bytes()
    Path("trunc.safetensors").write_bytes(raw[: len(raw) // 2])
    Path("garbage.safetensors").write_bytes(os.urandom(4096))
    Path("empty.safetensors").write_bytes(b"")
    Path("text.toml").write_text("this is [not toml")
    Path("afile").write_text("x")
    Path("adir").mkdir()
    Path("notckpt.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    for name, field, value in [("shape", "shape", [1, 28, 29]), ("kind", "kind", "video"), ("classes", "num_classes", -1),
                               ("names", "class_names", [1, 2]), ("shape2", "shape", "28x28"), ("bounds", "bounds", [0])]:
        meta = dict(header["__metadata__"])
        dataset = json.loads(meta["dataset"])
        dataset[field] = value
        meta["dataset"] = json.dumps(dataset)
        text = json.dumps({**header, "__metadata__": meta}).encode()
        text += b" " * (-len(text) % 8)
        Path(f"edit-{name}.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + size:])
    pipe = Path("p.toml").read_text()
    Path("badT.toml").write_text(pipe.replace("T = 50", 'T = "abc"'))
    Path("nosampler.toml").write_text("\n".join(line for line in pipe.splitlines() if "ddim" not in line))


CHECKPOINTS = ["nope", "nope.safetensors", "trunc.safetensors", "garbage.safetensors", "empty.safetensors", "adir",
               "afile", "notckpt.safetensors", "mnist-cgf", "p.toml", "edit-shape.safetensors", "edit-kind.safetensors",
               "edit-classes.safetensors", "edit-names.safetensors", "edit-shape2.safetensors", "edit-bounds.safetensors"]


def cases() -> list[tuple[str, list[str]]]:
    """(command, argv) pairs, each one mistake."""
    out: list[tuple[str, list[str]]] = []
    add = lambda cmd, *argv: out.append((cmd, [cmd, *map(str, argv)]))  # noqa: E731
    # sample: bad checkpoints, then bad options on a good one
    for c in CHECKPOINTS:
        add("sample", c, "-o", "x.png", "-n", 2, "--steps", 2)
    good = ["m.safetensors", "-o", "x.png", "-n", "2", "--steps", "2"]
    for extra in (["--sampler", "ddmi"], ["--sampler", ""], ["--steps", 0], ["--steps", 51], ["--steps", -1],
                  ["--steps", "x"], ["-n", 0], ["-n", "lots"], ["--set", "sampler.etta=1"], ["--set", "sampler.eta=2"],
                  ["--set", "sampler.eta=abc"], ["--set", "eta=1"], ["--set", "schedule.T=10"], ["--set", "sampler.eta"],
                  ["--set", "=1"], ["--set", "sampler.=1"], ["--guidance", "cgf"], ["--scale", -1], ["--scale", "x"],
                  ["--scale", 2], ["--label", 10], ["--label", -1], ["--label", "seven"], ["--label", "horizontal"],
                  ["--guidance", "classifier"], ["--guidance", "classifier", "--classifier", "nope.safetensors"],
                  ["--guidance", "classifier", "--classifier", "m.safetensors"], ["--pipeline", "nope.toml"],
                  ["--pipeline", "text.toml"], ["--pipeline", "adir"], ["--seed", -1], ["--seed", "x"],
                  ["--batch-size", 0], ["--precision", "fp8"], ["--device", "gpu7"], ["--device", "cuda:9"],
                  ["--trajectory", "adir"], ["--trajectory", "run/checkpoint.safetensors"], ["-o", "adir"],
                  ["-o", "afile/x.png"], ["-o", "run/checkpoint.safetensors"], ["-o", "m.safetensors"],
                  ["-o", "x" * 300 + ".png"], ["--set", "sampler.clip_x0=-1"], ["--set", "sampler.spacing=evenly"],
                  ["--set", "guidance.scale=1"], ["--sampler", "ode", "--set", "sampler.rtol=2"],
                  ["--sampler", "ode", "--set", "sampler.method=rk4"], ["--sampler", "pc", "--set", "sampler.snr=0"],
                  ["--bogus"]):
        if extra[0] == "-o":  # the output itself is the mistake
            add("sample", "m.safetensors", "-n", 2, "--steps", 2, *extra)
        else:
            add("sample", *good, *extra)
    # train
    base = ["p.toml", "--data", "mnist", "--steps", "1", "--batch-size", "4", "--sample-every", "0"]
    for extra in (["--out", "run"], ["--out", "afile"], ["--out", "run", "--resume", "--seed", "9"],
                  ["--out", "new", "--resume"], ["--out", "x" * 5000], ["--out", "n1", "--lr", 0], ["--out", "n2", "--lr", 2],
                  ["--out", "n3", "--lr", "x"], ["--out", "n4", "--batch-size", 0], ["--out", "n5", "--batch-size", 100000],
                  ["--out", "n6", "--warmup", -1], ["--out", "n7", "--grad-clip", 0], ["--out", "n8", "--ema-decay", 1],
                  ["--out", "n9", "--sample-steps", 5000], ["--out", "n10", "--checkpoint-every", 0],
                  ["--out", "n11", "--precision", "fp8"], ["--out", "n12", "--device", "tpu"], ["--out", "n13", "--nproc", 0],
                  ["--out", "n14", "--init", "nope"], ["--out", "n15", "--init", "garbage.safetensors"],
                  ["--out", "n16", "--log-every", 0], ["--out", "n17", "--seed", -5], ["--out", "n18", "--weight-decay", 2]):
        add("train", *base, *extra)
    for data in ("mnsit", "", ":x", "mnist:", "mnist:/nonexistent", "cifar10", "cifar10:/nonexistent", "cifar10:afile",
                 "image-folder", "image-folder:/nonexistent", "image-folder:adir", "gaussian-mixture:/x", "two-moons:adir"):
        add("train", "p.toml", "--data", data, "--steps", 1, "--out", f"d{len(out)}")
    for pipeline in ("nope.toml", "text.toml", "adir", "afile", "badT.toml", "nosampler.toml", "m.safetensors"):
        add("train", pipeline, "--data", "mnist", "--steps", 1, "--out", f"p{len(out)}")
    add("train", "p.toml", "--data", "mnist", "--out", "s1")
    add("train", "p.toml", "--steps", 1, "--out", "s2")
    add("train", "p.toml", "--data", "mnist", "--steps", 1)
    # compose
    for extra in (["--schedule", "cosin"], ["--sampler", "ddmi"], ["--schedule", ""], ["--denoiser", "unet"],
                  ["--objective", "smple"], ["--guidance", "cgf"], ["--set", "schedule.T=0"], ["--set", "schedule.T=abc"],
                  ["--set", "schedule.TT=1"], ["--set", "sched.T=1"], ["--set", "T=1"], ["--set", "schedule.T"],
                  ["--set", "denoiser.base_channels=8"], ["--set", "sampler.eta=-1"], ["--set", "schedule.beta_end=2"],
                  ["--set", "schedule.beta_start=0.1", "--set", "schedule.beta_end=0.01"], ["-o", "adir"],
                  ["-o", "afile/x.toml"], ["-o", "run/checkpoint.safetensors"], ["-o", "m.safetensors"],
                  ["-o", "x" * 300 + ".toml"], ["--set", "schedule.zero=1"]):
        argv = ["--schedule", "linear", "--sampler", "ddim"]
        for i in range(0, len(extra) - 1, 2):
            if extra[i] in ("--schedule", "--sampler") and extra[i] in argv:
                argv[argv.index(extra[i]) + 1] = extra[i + 1]
            else:
                argv += extra[i:i + 2]
        add("compose", *argv)
    add("compose", "--sampler", "ddim")
    add("compose", "--schedule", "linear")
    # export, evaluate, compare, schedules, train-classifier, new-plugin, plugins
    for c in CHECKPOINTS:
        add("export", c, "-o", "e.safetensors")
        add("evaluate", c, "--metric", "fid", "-n", 10)
    for extra in (["-o", "run/checkpoint.safetensors"], ["-o", "adir"], ["-o", "afile/e.safetensors"], ["-o", "p.toml"]):
        add("export", "run", *extra)
    for extra in (["--metric", "fdi"], ["--metric", "fid", "-n", 0], ["--metric", "fid", "-n", 5],
                  ["--metric", "accuracy", "--set", "metric.nn=3"], ["--metric", "fid", "--set", "metric.bootstrap=1"],
                  ["--metric", "bpd-ode", "--set", "metric.divergence=exact2"], ["--metric", "fid", "--sampler", "ddmi"],
                  ["--metric", "fid", "--steps", 0], ["--metric", "fid", "--scale", 1], ["--metric", "fid", "--json", "adir"],
                  ["--metric", "fid", "--json", "run/checkpoint.safetensors"], ["--metric", "sliced-wasserstein"],
                  ["--metric", "fid", "--guidance", "cgf"], []):
        add("evaluate", "m.safetensors", *extra)
    for extra in (["--metric", "fdi"], ["--metric", "fid", "--steps", "a,b"], ["--metric", "fid", "--steps", "0"],
                  ["--metric", "fid", "--scale", "1"], ["--metric", "fid", "--guidance", "cfg", "--scale", "x"],
                  ["--metric", "fid", "--sampler", "ddim,ddmi"], ["--metric", "fid", "-o", "afile"], []):
        add("compare", "m.safetensors", *extra, *([] if "-o" in extra else ["-o", "cmp"]))
    add("compare", "nope", "--metric", "fid", "-o", "cmp")
    for target in ("adir", "afile/s.png", "run/checkpoint.safetensors", "m.safetensors", "x" * 300 + ".png"):
        add("schedules", "--plot", target)
    for extra in (["--data", "mnist", "--steps", 0, "--out", "c.safetensors"], ["--data", "mnsit", "--steps", 1, "--out", "c.safetensors"],
                  ["--data", "mnist", "--steps", 1, "--out", "run/checkpoint.safetensors"],
                  ["--data", "mnist", "--steps", 1, "--out", "adir"], ["--data", "mnist", "--steps", 1, "--out", "afile/c.safetensors"],
                  ["--data", "gaussian-mixture", "--steps", 1, "--out", "c2.safetensors"]):
        add("train-classifier", "m.safetensors", *extra)
    add("train-classifier", "nope", "--data", "mnist", "--steps", 1, "--out", "c3.safetensors")
    for name, extra in (("ddim", []), ("cosine", ["--kind", "schedule"]), ("Bad Name", []), ("1abc", []), ("", []),
                        ("my-s", ["--kind", "video"]), ("my-s", ["-o", "afile"]), ("my-s", ["-o", "run"]),
                        ("import", []), ("my-s", ["-o", "/proc/x"])):
        add("new-plugin", name, *extra)
    # every bad checkpoint where another command takes one
    for c in CHECKPOINTS:
        add("train", *base, "--out", f"i{len(out)}", "--init", c)
        add("compare", c, "--metric", "accuracy", "-n", 10, "-o", "cmp2")
        add("train-classifier", c, "--data", "mnist", "--steps", 1, "--out", "c4.safetensors")
    # every registered name misspelt, and every sampler pushed past its limits
    import difftk

    for kind in ("schedule", "sampler", "denoiser", "objective", "guidance"):
        for name in difftk.available(kind):
            argv = {"schedule": "linear", "sampler": "ddim"}
            argv[kind] = name + "x"
            add("compose", *[a for k, v in argv.items() for a in (f"--{k}", v)])
    for name in difftk.available("sampler"):
        add("sample", *good, "--sampler", name, "--set", "sampler.no_such_option=1")
        add("sample", *good[:-2], "--sampler", name, "--steps", 100000)
    for metric in difftk.available("metric"):
        add("evaluate", "m.safetensors", "--metric", metric, "--set", "metric.no_such_option=1")
    for argv in (["nosuch"], ["--bogus"], ["plugins", "--jsn"], ["sample"], ["train"], ["compose", "--help", "--x"]):
        out.append((argv[0] if not argv[0].startswith("-") else "difftk", argv))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--show-all", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch(Path(tmp))
        table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        bad = []
        for command, argv in cases():
            result = CliRunner().invoke(cli, argv, catch_exceptions=True)
            stderr = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                outcome = "traceback"
            elif result.exit_code == 0:
                outcome = "exit 0"
            elif len(stderr) == 1 and stderr[0].startswith("error: "):
                outcome = "one-line error"
            else:
                outcome = "other"
            table[command][outcome] += 1
            if outcome != "one-line error" or args.show_all:
                said = stderr[-1] if stderr else repr(result.exception) if result.exception else result.stdout[-200:]
                shown = " ".join(a if len(a) < 40 else a[:12] + "…" for a in argv)
                bad.append(f"{outcome:>15}  difftk {shown}  →  {said[:200]}")
    outcomes = ["one-line error", "exit 0", "traceback", "other"]
    total = collections.Counter()
    print(f"{'command':<18}" + "".join(f"{o:>16}" for o in outcomes))
    for command in sorted(table):
        total.update(table[command])
        print(f"{command:<18}" + "".join(f"{table[command][o]:>16}" for o in outcomes))
    print(f"{'all':<18}" + "".join(f"{total[o]:>16}" for o in outcomes) + f"   ({sum(total.values())} inputs)")
    for line in bad:
        print(line)
    sys.exit(1 if total["traceback"] else 0)


if __name__ == "__main__":
    main()
