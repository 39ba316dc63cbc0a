"""The teacher's coupling drawn once: (x̂₀, z, label) pairs in safetensors chunks, reused by reflow.

Reflow (Liu et al. 2023, Algorithm 1) trains on pairs (x̂₀, z) with x̂₀ the teacher's ODE solution from
the noise z. Drawing them online costs ``teacher_steps`` teacher evaluations per training example, every
epoch; drawn once, every later epoch costs the student's own step only (Liu et al. draw theirs once too).

A pair directory holds ``pairs-NNNNNN.safetensors``, chunk k holding the examples
[k·chunk, (k+1)·chunk). Example i is fixed by the seed and i alone: z_i is example i's noise stream of
the draw (:func:`difftk.sampling.noise.example_seed`, the x_T that ``difftk sample --seed`` gives sample
i), and its label is i mod (C + 1) for a teacher trained with label dropout (C, the null class, is an
unconditional draw), i mod C for one without, none for an unconditional teacher. So a draw can stop
after any chunk and be extended later with the same result, and each chunk is written atomically.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

import attrs
import difftk
import torch
from difftk.checkpoint.files import read_file
from difftk.components.protocols import num_classes_of
from difftk.errors import DifftkError, OptionError
from difftk.maths.terminal import for_sampling
from difftk.runtime.files import atomic_write_bytes
from difftk.sampling.noise import ExampleNoise
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from difftk_distill.teacher import load_teacher

FORMAT = "difftk-reflow-pairs"
#: what the chunks of one draw must agree on
DRAW_KEYS = ("teacher", "teacher_sampler", "teacher_steps", "seed", "chunk", "shape", "classes")


def chunk_path(directory: Path, k: int) -> Path:
    return Path(directory) / f"pairs-{k:06d}.safetensors"


def labels_of(indices: range, num_classes: int, unconditional: bool) -> torch.Tensor | None:
    """Example i's label: i mod (C + 1) with the null class C when the teacher learned ε(x, ∅), else i mod C."""
    if num_classes <= 0:
        return None
    return torch.tensor([i % (num_classes + int(unconditional)) for i in indices], dtype=torch.long)


def learned_unconditional(teacher: Any) -> bool:
    """Whether the teacher was trained with label dropout (cfg's ``p_uncond`` > 0), so ∅ is a label it knows."""
    spec = getattr(getattr(teacher, "pipeline", None), "spec", None)
    guidance = spec.get("guidance") if spec is not None else None
    return bool(guidance is not None and dict(guidance.options).get("p_uncond", 0.0))


def draw(
    teacher_source: str,
    out: str | Path,
    n: int,
    *,
    teacher_sampler: str = "unipc",
    teacher_steps: int = 8,
    seed: int = 0,
    chunk: int = 256,
    device: str = "cpu",
    log: Any = None,
) -> int:
    """Draw the pairs 0..n−1 into ``out``, in whole chunks (n rounded up to a multiple of ``chunk``),
    skipping the chunks already there (a draw that stopped is continued; a larger ``n`` extends it).
    Returns the number of chunks written now."""
    if n < 1 or chunk < 1:
        raise OptionError(f"n={n}, chunk={chunk}: both must be at least 1")
    teacher = load_teacher(teacher_source, device)
    sampler = difftk.create("sampler", teacher_sampler)
    classes = num_classes_of(teacher.denoiser)
    unconditional = learned_unconditional(teacher)
    draw_meta = {
        "teacher": teacher_source,
        "teacher_sampler": teacher_sampler,
        "teacher_steps": str(teacher_steps),
        "seed": str(seed),
        "chunk": str(chunk),
        "shape": json.dumps(list(teacher.data_shape)),
        "classes": json.dumps([classes, unconditional]),
    }
    out = Path(out)
    written = 0
    for k in range((n + chunk - 1) // chunk):
        path = chunk_path(out, k)
        if path.is_file():
            _check_draw(path, read_chunk(path).meta, draw_meta)
            continue
        indices = range(k * chunk, (k + 1) * chunk)
        noise = ExampleNoise(seed, indices, device)
        z = noise.randn((chunk, *teacher.data_shape), device=device)
        labels = labels_of(indices, classes, unconditional)
        with torch.no_grad():
            x0 = sampler.sample(
                teacher.denoiser,
                for_sampling(teacher.schedule),
                z,
                steps=teacher_steps,
                cond=None if labels is None else labels.to(device),
                generator=noise,
            )
        tensors = {
            "x0": x0.float().cpu().contiguous(),
            "z": z.float().cpu().contiguous(),
            "index": torch.tensor(list(indices), dtype=torch.long),
        }
        if labels is not None:
            tensors["label"] = labels
        atomic_write_bytes(path, st_save(tensors, metadata={"format": FORMAT, **draw_meta}), replaces="none")
        written += 1
        if log is not None:
            log(f"chunk {k}: pairs {indices.start}..{indices.stop - 1} → {path}")
    return written


@attrs.frozen
class Chunk:
    """One file of a draw: pairs ``index`` as x̂₀ and z [B, *shape], their labels [B] (or ``None``), its metadata."""

    x0: torch.Tensor
    z: torch.Tensor
    label: torch.Tensor | None
    index: torch.Tensor
    meta: dict[str, str]


def read_chunk(path: Path) -> Chunk:
    """One chunk, read as untrusted bytes (safetensors, no pickle); one-line errors."""
    try:
        data, meta = read_file(Path(path), "no such chunk of reflow pairs")
        tensors = st_load(data)
    except DifftkError as err:
        raise OptionError(f"{path} is not a chunk of reflow pairs: {err}") from None
    except OSError as err:
        raise OptionError(f"{path}: cannot be read ({err.strerror or err})") from None
    except Exception as err:  # safetensors' own error for bad bytes
        raise OptionError(
            f"{path} is not a chunk of reflow pairs (corrupt or truncated): {' '.join(str(err).split())[:200]}"
        ) from None
    if meta.get("format") != FORMAT or not {"x0", "z", "index"} <= set(tensors):
        raise OptionError(
            f"{path} is a safetensors file but not a chunk of reflow pairs: draw them with "
            "`python -m difftk_distill.pairs`"
        )
    x0, z, index, label = tensors["x0"], tensors["z"], tensors["index"], tensors.get("label")
    rows = index.shape[0] if index.ndim == 1 else -1
    if (
        x0.shape != z.shape
        or x0.shape[0] != rows
        or not x0.is_floating_point()
        or (label is not None and label.shape != (rows,))
    ):
        raise OptionError(f"{path}: x0 {list(x0.shape)}, z {list(z.shape)}, index {list(index.shape)} do not agree")
    return Chunk(x0=x0, z=z, label=label, index=index, meta=meta)


def _check_draw(path: Path, meta: dict[str, str], expected: dict[str, str]) -> None:
    for key in DRAW_KEYS:
        if meta.get(key) != expected[key]:
            raise OptionError(
                f"{path} was drawn with {key}={meta.get(key)!r}, not {expected[key]!r}: draw into "
                "another directory, or with the same options"
            )


@attrs.frozen(eq=False)
class Pairs:
    """Every pair of a directory, grouped by label for :meth:`take` (``members`` sorted by label)."""

    x0: torch.Tensor
    z: torch.Tensor
    label: torch.Tensor | None
    meta: dict[str, str]
    members: torch.Tensor  # pair indices sorted by label
    starts: torch.Tensor  # [C + 2]: members[starts[c]:starts[c + 1]] have label c

    def __len__(self) -> int:
        return self.x0.shape[0]

    def take(
        self, cond: torch.Tensor | None, batch: int, generator: torch.Generator | None, device: torch.device | str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂₀, z) for a batch: pair k uniform among those of the example's label (among all pairs when
        ``cond`` is ``None``), one uniform number per example from ``generator`` (the trainer's
        checkpointed noise), so a resumed run draws the same pairs."""
        u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64).cpu()
        if cond is None:
            k = (u * len(self)).long().clamp_max(len(self) - 1)
        else:
            if self.label is None:
                raise OptionError(
                    "the reflow pairs have no labels (an unconditional teacher drew them), but the "
                    "student is class-conditional: draw them from a conditional teacher"
                )
            c = cond.cpu().long()
            if int(c.max()) + 1 >= len(self.starts):
                raise OptionError(
                    f"the reflow pairs know labels 0..{len(self.starts) - 2}, not {int(c.max())}: draw "
                    "them from a teacher with as many classes"
                )
            lo, hi = self.starts[c], self.starts[c + 1]
            empty = (hi == lo).nonzero()
            if len(empty):
                raise OptionError(
                    f"the reflow pairs hold no pair of label {int(c[empty[0, 0]])}: draw more, from a "
                    "teacher with as many classes (and trained with label dropout for the null class)"
                )
            k = self.members[lo + (u * (hi - lo)).long().clamp_max(hi - lo - 1)]
        return self.x0[k].to(device), self.z[k].to(device)


@functools.lru_cache(maxsize=2)
def load_pairs(directory: str) -> Pairs:
    """Every chunk of a pair directory, checked to come from one draw and to run 0, 1, … without a gap."""
    root = Path(directory)
    if not root.is_dir():
        raise OptionError(
            f"pairs={directory!r} is not a directory of reflow pairs: draw them with "
            "`python -m difftk_distill.pairs TEACHER DIRECTORY -n N`"
        )
    files = sorted(root.glob("pairs-*.safetensors"))
    if not files:
        raise OptionError(
            f"pairs={directory!r} holds no pairs-*.safetensors: draw them with "
            "`python -m difftk_distill.pairs TEACHER DIRECTORY -n N`"
        )
    chunks = [read_chunk(f) for f in files]
    first = chunks[0].meta
    for k, (f, chunk) in enumerate(zip(files, chunks, strict=True)):
        _check_draw(f, chunk.meta, first)
        if f != chunk_path(root, k):
            raise OptionError(f"{root}: chunk {k} is missing (found {f.name}): continue the draw to fill it")
    x0, z = torch.cat([c.x0 for c in chunks]), torch.cat([c.z for c in chunks])
    labelled = [c.label is not None for c in chunks]
    label = torch.cat([c.label for c in chunks]) if all(labelled) else None
    classes = json.loads(first["classes"])[0] if label is not None else 0  # C; the null class is label C
    if label is not None and (label.min() < 0 or label.max() > classes):
        raise OptionError(f"{root}: labels outside 0..{classes} (the teacher's classes and its null class)")
    if label is None:
        members, starts = torch.arange(len(x0)), torch.tensor([0, len(x0)])
    else:
        members = torch.argsort(label, stable=True)
        counts = torch.bincount(label, minlength=classes + 1)  # labels 0..C: starts has C + 2 entries
        starts = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    return Pairs(x0=x0, z=z, label=label, meta=first, members=members, starts=starts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m difftk_distill.pairs",
        description="Draw a teacher's reflow pairs (x̂₀, z, label) once, in chunks.",
    )
    parser.add_argument("teacher", help="a checkpoint, run directory or shipped model name")
    parser.add_argument("out", help="the pair directory (re-running continues or extends it)")
    parser.add_argument("-n", type=int, required=True, help="pairs wanted in all")
    parser.add_argument("--sampler", default="unipc", help="the teacher's sampler (deterministic, for a coupling)")
    parser.add_argument("--steps", type=int, default=8, help="its steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=256, help="pairs per file")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        draw(
            args.teacher,
            args.out,
            args.n,
            teacher_sampler=args.sampler,
            teacher_steps=args.steps,
            seed=args.seed,
            chunk=args.chunk,
            device=args.device,
            log=lambda line: print(line, flush=True),
        )
    except DifftkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
