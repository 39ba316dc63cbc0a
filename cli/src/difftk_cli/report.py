"""The HTML report of `difftk compare --report DIR`: one self-contained page, DIR/index.html.

The page holds the grid's table (mean ± 95 % confidence interval, the test of each cell against
the best or reference cell), the figure `compare` draws and a grid of samples per cell. Every
image is embedded as a base64 ``data:`` URI and the style sheet is inline: the page is one file
that loads no other resource and runs no script, so it can be mailed, archived or opened offline.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from difftk.evaluation.summary import ALPHA, CellSummary
from difftk.runtime.files import atomic_write_text
from PIL import Image

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td, tr.reference td { font-weight: 600; background: #eef6ee; }
tr.significant td.verdict { color: #a40000; }
.note { color: #555; max-width: 60em; }
.cells { display: flex; flex-wrap: wrap; gap: 1.5em; }
figure { margin: 0; } figcaption { font-size: 0.9em; color: #444; max-width: 20em; }
img.samples { image-rendering: pixelated; border: 1px solid #ccc; }
img.plot { max-width: 100%; }
"""


def data_uri(image: Image.Image | bytes) -> str:
    """A PNG (a PIL image, or PNG bytes) as a ``data:image/png;base64,…`` URI."""
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        image = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


def _cell_name(s: CellSummary) -> str:
    steps = "default steps" if s.steps is None else f"{s.steps} steps"
    scale = "" if s.scale is None else f" · scale {s.scale:g}"
    return f"{s.label} · {s.schedule} · {s.sampler} · {steps}{scale}"


def statistics_note(summaries: Sequence[CellSummary], against: str) -> str:
    """The sentences that say what ± and the marks mean (the terminal and the page print them)."""
    pooled = any(s.k > 1 for s in summaries)
    first = ("± is the 95 % Student-t confidence interval of the mean over the k values of a cell (its seeds and the "
             "checkpoints that differ only by their training seed); with k = 1 it is the metric's own spread. "
             if pooled else "± is each metric's own spread (k = 1 value per cell). ")
    if not pooled:
        return first + ("Differences are not tested: give several seeds (--seed 0,1,2) or checkpoints that differ "
                        "only by their training seed.")
    return first + (f"'vs {against}': Welch's unequal-variance t-test of each cell's mean against the {against} cell's, "
                    f"two-sided; * marks p < {ALPHA:g} (no correction for multiple comparisons); - where a side has "
                    "fewer than 2 values.")


def render(summaries: Sequence[CellSummary], *, title: str, command: str, against: str,
           plot_png: bytes | None, grids: Mapping[tuple, Image.Image]) -> str:
    """The page as a string (see the module docstring)."""
    esc = html.escape
    head = ("<tr><th>checkpoint</th><th>schedule</th><th>sampler</th><th>steps</th><th>scale</th><th>metric</th>"
            f"<th>mean ± 95% CI</th><th>k</th><th>n</th><th>vs {esc(against)}</th></tr>")
    body = []
    for s in summaries:
        kind = s.role or ("significant" if s.significant else "")
        unit = f" {esc(s.unit)}" if s.unit else ""
        body.append(
            f'<tr class="{kind}"><td>{esc(s.label)}</td><td>{esc(s.schedule)}</td><td>{esc(s.sampler)}</td>'
            f'<td class="num">{"default" if s.steps is None else s.steps}</td>'
            f'<td class="num">{"-" if s.scale is None else f"{s.scale:g}"}</td><td>{esc(s.metric)}</td>'
            f'<td class="num">{esc(s.interval())}{unit}</td><td class="num">{s.k}</td><td class="num">{s.n:,}</td>'
            f'<td class="verdict">{esc(s.verdict())}</td></tr>')
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"generator\" content=\"difftk\"><title>{esc(title)}</title>",
             f"<style>{_STYLE}</style></head><body>", f"<h1>{esc(title)}</h1>",
             f"<p class=\"note\"><code>{esc(command)}</code></p>",
             "<h2>Results</h2>", f"<table>{head}{''.join(body)}</table>",
             f"<p class=\"note\">{esc(statistics_note(summaries, against))}</p>"]
    if plot_png is not None:
        parts += ["<h2>Metrics against the grid</h2>",
                  f'<img class="plot" alt="value of each metric per cell" src="{data_uri(plot_png)}">']
    if grids:
        parts.append("<h2>Samples per cell</h2><div class=\"cells\">")
        seen = {}
        for s in summaries:  # one caption per cell, named as the table names it
            seen.setdefault(s.cell, s)
        for cell, image in grids.items():
            name = _cell_name(seen[cell]) if cell in seen else str(cell[0])
            zoom = max(1, 240 // image.width)  # small images enlarged by a whole factor, so pixels stay sharp
            parts.append(f'<figure><img class="samples" alt="{esc(name)}" width="{zoom * image.width}" '
                         f'height="{zoom * image.height}" '
                         f'src="{data_uri(image)}"><figcaption>{esc(name)}</figcaption></figure>')
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(directory: str | Path, summaries: Sequence[CellSummary], **page) -> Path:
    """Write :func:`render`'s page to ``directory``/index.html (atomically) and return its path."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(target / "index.html", render(summaries, **page))
