"""`difftk compare --report DIR`: one self-contained HTML page, opened in headless Chromium.

The page itself loads nothing and runs nothing. To see that every image decodes in a real
browser, the test opens a copy with a few lines of script added (test-only) that write each
image's natural size into the DOM, which `--dump-dom` prints; a screenshot of the page itself
must not be blank, and the browser's log must hold no console message or uncaught error. Two
broken copies (a corrupt image, a script error) show that these checks can fail.

Chromium comes from the OS packages (`.ci/run` installs it). Where it is missing the test fails
and says how to install it; outside CI, DIFFTK_SKIP_BROWSER=1 skips it instead.
"""

import base64
import io
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser

import pytest
from difftk_cli.testing import run
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DATA_PNG = "data:image/png;base64,"

#: test-only: after the load event, write "complete:width×height" of every image into the page
PROBE = """<script>window.addEventListener("load", function () {
  var sizes = Array.prototype.map.call(document.images, function (m) {
    return m.complete + ":" + m.naturalWidth + "x" + m.naturalHeight; });
  var out = document.createElement("pre"); out.id = "decoded"; out.textContent = sizes.join(" ");
  document.body.appendChild(out); });</script>"""


def browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    if os.environ.get("DIFFTK_CI") != "1" and os.environ.get("DIFFTK_SKIP_BROWSER") == "1":
        pytest.skip("DIFFTK_SKIP_BROWSER=1: the HTML report is not opened in a browser")
    pytest.fail("Chromium is not installed, so the HTML report cannot be opened: install it with "
                "`apt-get install -y chromium` (Debian; `chromium-browser` on Ubuntu), as .ci/run does, "
                "or set DIFFTK_SKIP_BROWSER=1 to skip this test outside CI")


def open_in_browser(page, tmp_path, *args) -> subprocess.CompletedProcess:
    """Load ``page`` in headless Chromium with its log on stderr; ``args`` say what to write."""
    command = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
               "--window-size=1280,2000", *args, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def page_errors(stderr: str) -> list[str]:
    """What the page said on the console, or threw, as Chromium logs it."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def decoded_sizes(page, tmp_path) -> list[tuple[bool, int, int]]:
    """(complete, naturalWidth, naturalHeight) of every <img> of ``page``, as Chromium decoded it."""
    probe = page.with_name(page.stem + ".probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = open_in_browser(probe, tmp_path, "--dump-dom").stdout
    found = re.search(r'<pre id="decoded">([^<]*)</pre>', dom)
    assert found, f"the probe did not run: {dom[-500:]}"
    return [(c == "true", int(w), int(h)) for c, w, h in re.findall(r"(\w+):(\d+)x(\d+)", found[1])]


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture
def report(toy_pipeline):
    """A report of two experiments of toy points (one trained with seeds 0 and 1), two step
    counts and two sampling seeds: 4 cells, with k = 4 and k = 2 values."""
    tmp_path = toy_pipeline
    for out, extra in (("a0", ()), ("a1", ("--seed", 1)), ("b0", ("--lr", 1e-3))):
        assert run("train", "p.toml", "--data", "toy-points", "--steps", 4, "--out", out, "--sample-every", 0,
                   *extra).exit_code == 0
    result = run("compare", "a0", "a1", "b0", "--metric", "sliced-wasserstein", "-n", 30, "--steps", "2,3",
                 "--seed", "0,1", "--set", "metric.bootstrap=2", "-o", "cmp", "--report", "cmp/report")
    assert result.exit_code == 0, result.output
    assert "wrote cmp/report/index.html (one self-contained file)" in result.stdout
    return tmp_path / "cmp" / "report" / "index.html"


def test_the_report_is_one_file_whose_table_and_images_render(report, tmp_path):
    text = report.read_text()
    parser = Tags()
    parser.feed(text)
    tags = [t for t, _ in parser.tags]
    assert not {"script", "link", "iframe", "object", "embed"} & set(tags), "the page must load and run nothing"
    assert not re.search(r"(src|href)=\"(?!data:)", text) and "url(" not in text
    images = [a["src"] for t, a in parser.tags if t == "img"]
    assert len(images) == 1 + 4  # the plot, and one grid of samples per cell
    sizes = []
    for src in images:
        assert src.startswith(DATA_PNG)
        with Image.open(io.BytesIO(base64.b64decode(src[len(DATA_PNG):], validate=True))) as png:
            assert png.format == "PNG"
            png.load()
            sizes.append(png.size)
    rows = re.findall(r"<tr class=\"(\w*)\">(.*?)</tr>", text)
    assert len(rows) == 2 * 2  # (the two experiments) × (two step counts), one metric
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for _, row in rows]
    assert sorted(c[7] for c in cells) == ["2", "2", "4", "4"]  # k: 2 checkpoints × 2 seeds, and 1 × 2
    assert [c[0] for c in cells].count("a0 (+1 seed)") == 2
    assert sum(kind == "best" for kind, _ in rows) == 1  # sliced-wasserstein: the lowest mean
    assert all(re.fullmatch(r"best|p = [0-9.e-]+( \*)?", c[9]) for c in cells)
    assert "Welch" in text and "95 % Student-t confidence interval" in text

    started = time.perf_counter()
    shot = tmp_path / "shot.png"
    opened = open_in_browser(report, tmp_path, f"--screenshot={shot}")
    assert opened.returncode == 0, opened.stderr[-2000:]
    assert page_errors(opened.stderr) == []
    with Image.open(shot) as image:
        grey = image.convert("L")
        dark = sum(grey.histogram()[:200])
        assert dark > 0.01 * grey.width * grey.height, "the screenshot is blank"
    decoded = decoded_sizes(report, tmp_path)
    assert decoded == [(True, w, h) for w, h in sizes]  # every image decoded, at its own size
    print(f"chromium: {time.perf_counter() - started:.2f} s for the screenshot and the decode probe")


def test_the_browser_checks_can_fail(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(f'<!DOCTYPE html><html><body><img src="{DATA_PNG}iVBORw0KGgoAAAAbroken">'
                      "<script>notDefined();</script></body></html>")
    assert decoded_sizes(broken, tmp_path) == [(True, 0, 0)]  # a corrupt image has no size
    assert any("Uncaught" in line for line in page_errors(open_in_browser(broken, tmp_path, "--dump-dom").stderr))


def test_compare_pools_seeds_into_cells_in_its_csv_files(report, tmp_path):
    import csv

    measured = list(csv.DictReader((tmp_path / "cmp" / "compare.csv").open()))
    assert len(measured) == 3 * 2 * 2  # checkpoints × steps × seeds, one metric
    assert {r["seed"] for r in measured} == {"0", "1"}
    summary = list(csv.DictReader((tmp_path / "cmp" / "summary.csv").open()))
    assert [(r["checkpoint"], r["steps"], r["k"]) for r in summary] == [
        ("a0 (+1 seed)", "2", "4"), ("a0 (+1 seed)", "3", "4"), ("b0", "2", "2"), ("b0", "3", "2")]
    for r in summary:  # each mean is the mean of its cell's measurements
        values = [float(m["value"]) for m in measured if m["steps"] == r["steps"]
                  and (m["checkpoint"] == "b0") == (r["checkpoint"] == "b0")]
        assert float(r["mean"]) == pytest.approx(sum(values) / len(values))
    assert [r["role"] for r in summary].count("best") == 1
    assert all(r["p"] != "" for r in summary if r["role"] != "best")
