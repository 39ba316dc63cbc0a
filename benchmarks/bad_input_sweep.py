"""Bad input, as careless users, hostile files and broken plugins give it: every case must end in one
`error:` line (exit 2), never a traceback, never a silent success, and never a changed file.

Runs each `difftk …` command line in this process (click's test runner, exceptions caught so a
traceback is counted, not fatal) inside a scratch directory with a tiny trained run, a corrupt
checkpoint, an edited one and a few files in the way, and prints a table by command and outcome,
then every case that did not give one clean line. A case that changed or removed a file that was
there before it ran counts as "lost work", whatever it said. Issue 31's classes (outputs checked
before the work, full disks, plugins that fail, n beyond memory, messages, and the files difftk
reads: training state, depth and size bombs, log.jsonl, classifiers, diffusers configs, images,
pipeline TOML, dtypes) are the second part of the list, :func:`more_cases`.

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


#: third-party plugins the plugin cases install into a folder put on sys.path (real dist-infos)
BAD_PLUGINS = {
    "sweep_exits": "import sys\nsys.exit(0)\n",
    "sweep_hangs": "import threading\nthreading.Event().wait(600)\n",
    "sweep_load_fails": ("import difftk\n\n@difftk.hookimpl\ndef difftk_load_model(source, device):\n"
                         "    raise ValueError('the plugin\\'s own bug')\n"),
    "sweep_samplers": '''import attrs, difftk, torch


@attrs.frozen
class Bad:
    way: str = "raise"

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
        if self.way == "raise":
            raise ZeroDivisionError("in its step")
        if self.way == "none":
            return None
        if self.way == "nan":
            return torch.full_like(x_T, float("nan"))
        return x_T[:, :, :3]


@difftk.hookimpl
def difftk_register_components(register):
    register.add_sampler("bad", Bad)
''',
}


def _nest(depth: int) -> str:
    return "[" * depth + "]" * depth


def _header(raw: bytes) -> tuple[dict, bytes]:
    (size,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + size]), raw[8 + size:]


def _with_header(header: dict | str, body: bytes) -> bytes:
    text = (header if isinstance(header, str) else json.dumps(header)).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def _edit_meta(src: str, dst: str, **changes) -> None:
    header, body = _header(Path(src).read_bytes())
    meta = dict(header["__metadata__"])
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        elif callable(value):
            meta[key] = value(meta.get(key))
        else:
            meta[key] = value
    Path(dst).write_bytes(_with_header({**header, "__metadata__": meta}, body))


def _edit_json_field(field: str, value):
    def edit(text):
        record = json.loads(text)
        record[field] = value
        return json.dumps(record)
    return edit


def _retype(src: str, dst: str, tensor_prefix: str, dtype: str, keep_bytes: bool = True) -> None:
    """Relabel the dtype of the tensors named ``tensor_prefix…`` in the header (offsets unchanged)."""
    header, body = _header(Path(src).read_bytes())
    for name, entry in header.items():
        if name.startswith(tensor_prefix) and isinstance(entry, dict) and entry.get("dtype") == "F32":
            entry["dtype"] = dtype
            if dtype in ("F8_E4M3", "F8_E5M2") and not keep_bytes:
                pass
    Path(dst).write_bytes(_with_header(header, body))


def _run_copy(name: str, **changes) -> str:
    """A copy of the tiny run whose training checkpoint has ``changes`` (metadata or tensors)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    target = Path(f"r-{name}")
    shutil.copytree("run", target)
    path = target / "checkpoint.safetensors"
    header, _ = _header(path.read_bytes())
    meta = dict(header["__metadata__"])
    tensors = load_file(path)
    for key, value in changes.items():
        key = key.replace("__", "/")
        if key in tensors or key.startswith("rng/"):
            tensors[key] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
        else:
            meta[key] = value if isinstance(value, str) else json.dumps(value)
    save_file(tensors, str(path), metadata=meta)
    return str(target)


def scratch2() -> None:
    """The files issue 31's cases refer to (after :func:`scratch`, in the same folder)."""
    import zlib

    import torch
    from PIL import Image, PngImagePlugin

    raw = Path("m.safetensors").read_bytes()
    header, body = _header(raw)
    # the user's own work where an output goes
    Path("mine.png").write_bytes(b"\x89PNG\r\n\x1a\n not difftk's\n")
    Path("mine.toml").write_text("# the user's own notes\n")
    Path("mine.json").write_text('{"mine": true}\n')
    Path("mine.safetensors").write_bytes(raw[:8] + raw[8:])  # a copy of the export: overwritable by export only
    Path("photo.safetensors").write_bytes(_with_header({"__metadata__": {"format": "not-difftk"}}, b""))
    Path("mine-dir").mkdir()
    Path("mine-dir/notes.txt").write_text("mine\n")
    for name in ("log.jsonl", "compare.csv", "index.html", "000000.png"):
        Path(f"mine-{name}").mkdir()
        Path(f"mine-{name}/{name}").write_text("mine\n")
    Path("diffusers-mine").mkdir()
    Path("diffusers-mine/model_index.json").write_text('{"_class_name": "DDPMPipeline"}\n')
    os.symlink("loop", "loop")
    os.symlink("nowhere/at/all", "dangling.png")
    # depth and size bombs in checkpoint metadata and headers
    deep = _nest(100_000)
    for field in ("dataset", "pipeline", "plugins"):
        _edit_meta("m.safetensors", f"deep-{field}.safetensors", **{field: deep})
    Path("deep-header.safetensors").write_bytes(_with_header('{"__metadata__": ' + deep + "}", body))
    _edit_meta("m.safetensors", "huge-shape.safetensors", dataset=_edit_json_field("shape", [1, 65536, 65536]))
    _edit_meta("m.safetensors", "huge-channels.safetensors", pipeline=lambda text: text.replace(
        '"base_channels": 8', '"base_channels": 100000'))
    _retype("m.safetensors", "f32-as-i32.safetensors", "ema/", "I32")
    _retype("m.safetensors", "f8.safetensors", "ema/", "F8_E4M3")
    # training state edited by hand
    Path("resume.toml").write_text(Path("p.toml").read_text())
    for name, changes in {"order-x": {"data_order": {"position": "x"}}, "order-list": {"data_order": []},
                          "position-neg": {"data_order": {"position": -1}},
                          "rng-torch": {"rng__torch": torch.zeros(10, dtype=torch.uint8)},
                          "rng-noise": {"rng__noise": torch.zeros(10, dtype=torch.uint8)},
                          "rng-data": {"rng__data": torch.zeros(3, dtype=torch.float32)},
                          "groups-str": {"optimizer": {"param_groups": "x"}},
                          "groups-ints": {"optimizer": {"param_groups": [1, 2]}}}.items():
        _run_copy(name, **changes)
    # log.jsonl, damaged
    lines = Path("run/log.jsonl").read_text()
    for name, text in {"utf8": b"\xff\xfe" + lines.encode(), "infinity": b'{"step": Infinity, "loss": 1}\n' + lines.encode(),
                       "huge": lines.encode() + b'{"step": 3, "loss": 1e308, "lr": -1e308}\n',
                       "deep": lines.encode() + ("{\"step\": 3, \"x\": " + deep + "}\n").encode(),
                       "nan": lines.encode() + b'{"step": 3, "loss": NaN}\n'}.items():
        import shutil

        shutil.copytree("run", f"log-{name}")
        Path(f"log-{name}/log.jsonl").write_bytes(text)
    # classifier files
    assert CliRunner().invoke(cli, ["train-classifier", "run", "--data", "mnist", "--steps", "1", "--batch-size", "4",
                                    "--set", "classifier.base_channels=8", "--out", "clf.safetensors"]).exit_code == 0
    _edit_meta("clf.safetensors", "clf-notjson.safetensors", classifier="{not json")
    _edit_meta("clf.safetensors", "clf-missing.safetensors", classifier=None)
    _edit_meta("clf.safetensors", "clf-types.safetensors", classifier='{"name": 7, "options": "x"}')
    _edit_meta("clf.safetensors", "clf-wide.safetensors", classifier=lambda text: text.replace(
        '"base_channels": 8', '"base_channels": 100000'))
    _edit_meta("clf.safetensors", "clf-deep.safetensors", classifier=deep)
    from safetensors.torch import load_file, save_file

    tensors = load_file("clf.safetensors")
    first = next(iter(tensors))
    tensors[first] = torch.full_like(tensors[first], float("nan"))
    save_file(tensors, "clf-nan.safetensors", metadata=_header(Path("clf.safetensors").read_bytes())[0]["__metadata__"])
    # images: a decompression bomb and a text chunk past Pillow's limit
    bomb = b"\x89PNG\r\n\x1a\n"
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    bomb += struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\x00" * 100)
    bomb += struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    bomb += struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    Path("bomb.png").write_bytes(bomb)
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (2 ** 21), zip=True)
    Image.new("L", (28, 28)).save("ztxt.png", pnginfo=info)
    # pipeline TOML structure
    pipe = Path("p.toml").read_text()
    for name, text in {"difftk-number": pipe.replace("[difftk]\nformat = 1", "difftk = 1"),
                       "format-string": pipe.replace("format = 1", 'format = "1"'),
                       "format-99": pipe.replace("format = 1", "format = 99"),
                       "schedule-number": pipe.split("[schedule]")[0] + "schedule = 1\n",
                       "name-number": pipe.replace('name = "linear"', "name = 1"),
                       "deep-array": pipe + "\n[extra]\nx = " + "[" * 5000 + "]" * 5000 + "\n",
                       "wide-net": pipe.replace("base_channels = 8", "base_channels = 100000")}.items():
        Path(f"toml-{name}.toml").write_text(text)
    # diffusers folders with bad configs (a tiny UNet2DModel, written by diffusers itself)
    try:
        from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
    except ImportError:
        return
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                       norm_num_groups=4, attention_head_dim=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=50)).save_pretrained("hf")
    import shutil

    for name, (part, key, value) in {"beta-start": ("scheduler/scheduler_config.json", "beta_start", "abc"),
                                     "trained-betas": ("scheduler/scheduler_config.json", "trained_betas", ["x"]),
                                     "size-str": ("unet/config.json", "sample_size", "abc"),
                                     "size-list": ("unet/config.json", "sample_size", [8, 8, 8]),
                                     "size-neg": ("unet/config.json", "sample_size", -4),
                                     "size-zero": ("unet/config.json", "sample_size", 0),
                                     "size-huge": ("unet/config.json", "sample_size", 1_000_000),
                                     "channels-str": ("unet/config.json", "in_channels", "x")}.items():
        shutil.copytree("hf", f"hf-{name}")
        config = json.loads(Path(f"hf-{name}/{part}").read_text())
        config[key] = value
        Path(f"hf-{name}/{part}").write_text(json.dumps(config))
    shutil.copytree("hf", "hf-deep")
    Path("hf-deep/model_index.json").write_text('{"x": ' + deep + "}")


def scratch3() -> None:
    """Runs whose lock file is a folder (after :func:`scratch2`: its diffusers part may return early)."""
    import shutil

    Path("lockdir/.lock").mkdir(parents=True)
    shutil.copytree("run", "lockrun")
    (Path("lockrun") / ".lock").unlink(missing_ok=True)
    (Path("lockrun") / ".lock").mkdir()


#: every output a command names, with a command line whose inputs are good: (command, argv before, flag, suffix)
OUTPUTS = [
    ("sample", ["sample", "m.safetensors", "-n", "2", "--steps", "2"], "-o", ".png"),
    ("sample", ["sample", "m.safetensors", "-n", "2", "--steps", "2", "-o", "ok.png"], "--trajectory", ".png"),
    ("compose", ["compose", "--from", "p.toml", "--sampler", "ddim"], "-o", ".toml"),
    ("export", ["export", "run"], "-o", ".safetensors"),
    ("export", ["export", "hf", "--format", "diffusers"], "-o", "/"),
    ("evaluate", ["evaluate", "m.safetensors", "--metric", "fid", "-n", "10"], "--json", ".json"),
    ("compare", ["compare", "m.safetensors", "--metric", "fid", "-n", "10"], "-o", "/"),
    ("compare", ["compare", "m.safetensors", "--metric", "fid", "-n", "10", "-o", "cmp-ok"], "--report", "/"),
    ("plot", ["plot", "run"], "-o", ".png"),
    ("schedules", ["schedules"], "--plot", ".png"),
    ("train", ["train", "p.toml", "--data", "mnist", "--steps", "1", "--batch-size", "4", "--sample-every", "0"], "--out", "/"),
    ("train-classifier", ["train-classifier", "run", "--data", "mnist", "--steps", "1", "--batch-size", "4"], "--out",
     ".safetensors"),
    ("new-plugin", ["new-plugin", "my-s"], "-o", "/"),
]
#: the input of each command line above that the "an input of the command" case writes over
INPUT_OF = {"sample": "m.safetensors", "evaluate": "m.safetensors", "compare": "m.safetensors", "plot": "run/log.jsonl",
            "train-classifier": "m.safetensors", "compose": "p.toml", "export": "run/checkpoint.safetensors"}


def more_cases() -> list[tuple]:
    """Issue 31's classes: (command, argv, options) with options ``env`` (environment), ``fault``
    (``full``: the disk reports 0 bytes free), ``plugins`` (the broken third-party plugins installed)
    and ``ok`` (exit 0 is the right answer: a switch set to off, say)."""
    out: list[tuple] = []
    add = lambda cmd, *argv, **opts: out.append((cmd, [cmd, *map(str, argv)], opts))  # noqa: E731
    # 1-2. every output: under a file, too long, in /proc, a link loop, a dangling link, the user's own
    # work, an input of the command, a folder for a file (or a file for a folder), empty; then a full disk
    for command, before, flag, suffix in OUTPUTS:
        folder = suffix == "/"
        ext = "" if folder else suffix
        mine = {".png": "mine.png", ".toml": "mine.toml", ".json": "mine.json", ".safetensors": "photo.safetensors"}
        own = mine.get(suffix) or {"compare": "mine-compare.csv", "train": "mine-log.jsonl",
                                   "--report": "mine-index.html"}.get(flag if flag == "--report" else command, "mine-dir")
        if command == "export" and folder:
            own = "diffusers-mine"
        targets = [f"afile/o{ext}", "y" * 300 + ext, f"/proc/difftk{ext}", f"loop/o{ext}", own, "",
                   "afile" if folder else "mine-dir"]
        if command in INPUT_OF and not folder:
            targets.append(INPUT_OF[command])
        if not folder:
            targets.append("dangling.png" if suffix == ".png" else f"nowhere/{'z' * 256}{ext}")
        for target in targets:
            add(command, *before[1:], flag, target)
        add(command, *before[1:], flag, f"full{ext}", fault="full")
    add("train-classifier", "run", "--data", "mnist", "--steps", 1, "--out", "m.safetensors")  # over an exported model
    add("plot", "run", "-o", "run/log.jsonl")
    add("sample", "m.safetensors", "-n", 2, "--steps", 2, "-o", "cmp-same", "--format", "png-folder",
        "--trajectory", "cmp-same")
    # 3. a full disk while training (its log write refused)
    add("train", "p.toml", "--data", "mnist", "--steps", 2, "--batch-size", 4, "--out", "full-run", "--sample-every", 0,
        fault="full-log")
    # 5. n far beyond memory
    for n in ("1000000000", "1000000000000", str(2 ** 62)):
        add("evaluate", "m.safetensors", "--metric", "accuracy", "-n", n)
        add("evaluate", "m.safetensors", "--metric", "fid", "-n", n)
        add("compare", "m.safetensors", "--metric", "accuracy", "-n", n, "-o", f"cmp-n{len(n)}")
    add("train", "p.toml", "--data", "mnist", "--steps", 1, "--batch-size", 4, "--out", "big-eval", "--sample-every", 0,
        "--eval-every", 1, "--eval-metric", "accuracy", "--eval-n", 1000000000)
    # 11. third-party plugins that fail (installed for these cases only)
    for way in ("raise", "none", "nan", "shape"):
        bad = ["--sampler", "bad", "--set", f"sampler.way={way}"]
        add("sample", "m.safetensors", "-n", 2, "--steps", 2, "-o", f"bad-{way}.png", *bad, plugins=True)
        add("evaluate", "m.safetensors", "--metric", "accuracy", "-n", 10, *bad, plugins=True)
        add("compare", "m.safetensors", "--metric", "accuracy", "-n", 10, *bad, "-o", f"cmp-bad-{way}", plugins=True)
    for argv in (["sample", "nope", "-o", "x.png"], ["evaluate", "nope", "--metric", "fid"], ["export", "nope", "-o", "e.safetensors"],
                 ["compare", "nope", "--metric", "fid", "-o", "cmp-nope"], ["sample", "adir", "-o", "x.png"]):
        add(*argv, plugins=True)
    add("plugins", plugins=True, ok=True)
    add("schedules", plugins=True, ok=True)
    add("sample", "m.safetensors", "-n", 2, "--steps", 2, "-o", "plug-ok.png", plugins=True, ok=True)
    # 14. messages: markup and emoji codes, empty lists, switches, long names, a lock that is a folder
    for label in (":smile:", ":-1:", "[bold]x[/]", "[red]", ":thumbs_up: 7"):
        add("sample", "m.safetensors", "-n", 2, "--steps", 2, "-o", "x.png", "--label", label)
    for init in ("train:-1", "test::-1:", "[b]x.png", ":smile:.png"):
        add("sample", "m.safetensors", "-n", 2, "--steps", 2, "-o", "x.png", "--init", init)
    for flag, value in (("--sampler", ""), ("--sampler", ","), ("--steps", ","), ("--scale", ","), ("--seed", ",")):
        add("compare", "m.safetensors", "--metric", "fid", flag, value, "-o", "cmp-msg",
            *(["--guidance", "cfg"] if flag == "--scale" else []))
    for value in ("false", "no", "off", "0", "False", "maybe"):
        add("plugins", env={"DIFFTK_STRICT_PLUGINS": value}, ok=True)
    add("new-plugin", "a" * 329)
    add("new-plugin", "a" * 65, "-o", "np-long")
    add("new-plugin", "my-s", "-o", "p" * 300)
    add("train", "p.toml", "--data", "mnist", "--steps", 1, "--out", "lockdir")
    add("train", "p.toml", "--data", "mnist", "--steps", 3, "--out", "lockrun", "--resume")
    # 4. training state edited by hand, resumed
    for name in ("order-x", "order-list", "position-neg", "rng-torch", "rng-noise", "rng-data", "groups-str", "groups-ints"):
        add("train", "resume.toml", "--steps", 3, "--batch-size", 4, "--out", f"r-{name}", "--resume", "--sample-every", 0)
    # 5. depth and size bombs
    for name in ("deep-dataset", "deep-pipeline", "deep-plugins", "deep-header", "huge-shape", "huge-channels"):
        add("sample", f"{name}.safetensors", "-n", 2, "--steps", 2, "-o", "x.png")
        add("export", f"{name}.safetensors", "-o", f"e-{name}.safetensors")
        add("evaluate", f"{name}.safetensors", "--metric", "fid", "-n", 10)
    add("train", "toml-wide-net.toml", "--data", "mnist", "--steps", 1, "--out", "wide")
    # 6. log.jsonl, damaged
    for name in ("utf8", "infinity", "huge", "deep", "nan"):
        add("plot", f"log-{name}", "-o", f"plot-{name}.png")
        add("train", "p.toml", "--steps", 3, "--batch-size", 4, "--out", f"log-{name}", "--resume", "--sample-every", 0)
    # 7. classifier files
    for name in ("notjson", "missing", "types", "wide", "deep", "nan"):
        add("sample", "m.safetensors", "-n", 2, "--steps", 2, "-o", "x.png", "--guidance", "classifier", "--classifier",
            f"clf-{name}.safetensors", "--label", 1)
    # 8. diffusers configs
    for name in ("beta-start", "trained-betas", "size-str", "size-list", "size-neg", "size-zero", "size-huge",
                 "channels-str", "deep"):
        add("sample", f"hf-{name}", "-n", 1, "--steps", 2, "-o", "x.png")
    # 9. malicious images for --init and --mask
    for image in ("bomb.png", "ztxt.png"):
        add("sample", "m.safetensors", "-n", 1, "--steps", 2, "-o", "x.png", "--init", image, "--strength", 0.5)
        add("sample", "m.safetensors", "-n", 1, "--steps", 2, "-o", "x.png", "--init", "test:0", "--mask", image)
    # 10. pipeline TOML structure
    for name in ("difftk-number", "format-string", "format-99", "schedule-number", "name-number", "deep-array"):
        add("compose", "--from", f"toml-{name}.toml")
        add("train", f"toml-{name}.toml", "--data", "mnist", "--steps", 1, "--out", f"t-{name}")
        add("sample", "m.safetensors", "-n", 2, "--steps", 2, "-o", "x.png", "--pipeline", f"toml-{name}.toml")
    # 12. dtypes relabelled
    for name in ("f32-as-i32", "f8"):
        add("sample", f"{name}.safetensors", "-n", 2, "--steps", 2, "-o", "x.png")
        add("evaluate", f"{name}.safetensors", "--metric", "fid", "-n", 10)
        add("export", f"{name}.safetensors", "-o", f"e-{name}.safetensors")
    return out


def _install_bad_plugins(root: Path) -> Path:
    site = root / "site"
    site.mkdir()
    for name, text in BAD_PLUGINS.items():
        (site / f"{name}.py").write_text(text)
        info = site / f"{name}-0.0.1.dist-info"  # the wheel spelling: "-" only before the version
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.0.1\n")
        (info / "entry_points.txt").write_text(f"[difftk]\n{name} = {name}\n")
    return site


def _snapshot(root: Path) -> dict[Path, tuple[int, int]]:
    """Every file under ``root`` (not following links) with its size and modification time."""
    found = {}
    for folder, dirs, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            try:
                st = path.lstat()
            except OSError:
                continue
            found[path] = (st.st_size, st.st_mtime_ns)
    return found


def _invoke(argv: list[str], opts: dict, site: Path):
    """One case, with its environment, fault and plugins."""
    import contextlib
    import errno
    from unittest import mock

    from difftk.components import plugins
    from difftk.runtime import files
    from difftk.training import rundir

    with contextlib.ExitStack() as stack:
        if opts.get("fault") == "full":
            stack.enter_context(mock.patch.object(files.os, "statvfs", lambda p: os.statvfs_result(
                (4096, 4096, 1000, 0, 0, 100, 0, 0, 0, 255))))
        if opts.get("fault") == "full-log":
            def full(self, text):
                raise files.OutputError(f"cannot write {self.path}: {os.strerror(errno.ENOSPC)}")
            stack.enter_context(mock.patch.object(rundir.RunLog, "write", full))
        if opts.get("plugins") or opts.get("env"):
            sys.path.insert(0, str(site)) if opts.get("plugins") else None
            plugins.reset()
            stack.callback(plugins.reset)
            if opts.get("plugins"):
                stack.callback(sys.path.remove, str(site))
        env = {"DIFFTK_PLUGIN_TIMEOUT": "2", **opts.get("env", {})}
        return CliRunner().invoke(cli, argv, catch_exceptions=True, env=env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--show-all", action="store_true")
    ap.add_argument("--only-new", action="store_true", help="only issue 31's cases (more_cases)")
    ap.add_argument("--trace", action="store_true", help="print each case to stderr before it runs")
    ap.add_argument("--memory", type=float, default=4.0,
                    help="GB the cases may map beyond what is mapped at the start (RLIMIT_AS): a size bomb that "
                         "difftk does not bound is then a MemoryError, counted as a traceback, not a machine out of memory")
    args = ap.parse_args()
    import resource

    with open("/proc/self/status") as fh:
        mapped = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    limit = mapped + int(args.memory * 1e9)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    import importlib
    import time

    from difftk_cli.console import show_plugin_warnings

    show_plugin_warnings()  # a skipped plugin is one `warning:` line, as `difftk` itself prints it
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        scratch(Path(tmp))
        scratch2()
        scratch3()
        site = _install_bad_plugins(Path(tmp))
        importlib.invalidate_caches()
        baseline = _snapshot(Path(tmp))
        table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        bad = []
        first = [] if args.only_new else [(command, argv, {}) for command, argv in cases()]
        for part, (command, argv, opts) in [*(("old", c) for c in first), *(("new", c) for c in more_cases())]:
            before = _snapshot(Path(tmp))
            if args.trace:
                print(f"{part}: difftk {' '.join(a[:40] for a in argv)} {opts or ''}", file=sys.stderr, flush=True)
            result = _invoke(argv, opts, site)
            after = _snapshot(Path(tmp))
            # the files made before the cases (not the outputs of earlier cases, nor the runs resumed on purpose)
            changed = [p for p in baseline if after.get(p) != before.get(p) and p.name != ".lock"  # its pid: the last writer's
                       and not p.relative_to(tmp).parts[0].startswith(("r-", "log-", "site"))]
            stderr = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                outcome = "traceback"
            elif changed:
                outcome = "lost work"
            elif result.exit_code == 0:
                outcome = "worked" if opts.get("ok") else "exit 0"
            elif len(stderr) == 1 and stderr[0].startswith("error: "):
                outcome = "one-line error"
            else:
                outcome = "other"
            table[command][outcome] += 1
            table[f"({part})"][outcome] += 1
            if outcome not in ("one-line error", "worked") or args.show_all:
                said = stderr[-1] if stderr else repr(result.exception) if result.exception else result.stdout[-200:]
                if changed:
                    said = f"changed {', '.join(str(p.relative_to(tmp)) for p in changed[:3])}; {said}"
                shown = " ".join(a if len(a) < 40 else a[:12] + "…" for a in argv)
                extra = " ".join(f"{k}={v}" for k, v in opts.items() if k != "ok")
                bad.append(f"{outcome:>15}  difftk {shown}{f' [{extra}]' if extra else ''}  →  {said[:200]}")
    outcomes = ["one-line error", "worked", "exit 0", "traceback", "lost work", "other"]
    total = collections.Counter()
    print(f"{'command':<18}" + "".join(f"{o:>16}" for o in outcomes))
    for command in sorted(table):
        if not command.startswith("("):
            total.update(table[command])
        print(f"{command:<18}" + "".join(f"{table[command][o]:>16}" for o in outcomes))
    print(f"{'all':<18}" + "".join(f"{total[o]:>16}" for o in outcomes) + f"   ({sum(total.values())} inputs, "
          f"{time.monotonic() - started:.0f} s)")
    for line in bad:
        print(line)
    sys.exit(1 if total["traceback"] or total["lost work"] else 0)


if __name__ == "__main__":
    main()
