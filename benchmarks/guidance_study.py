"""Read what benchmarks/guidance_study.sh measured (OUT/MODEL/METHOD/compare.csv) and write the study's
table and figure: each method's cells (mean ± 95 % CI over the seeds), Welch's t against the plain-cfg
cell of best quality among those at least as accurate (the comparison at equal class fidelity), and per model the Pareto front
of accuracy against FID (or KID) per method.

    python benchmarks/guidance_study.py runs/guidance-study [--metric fid --metric kid] [-o docs/img/guidance_study.png]
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from difftk.maths.stats import mean_confidence_interval, welch_t_test

#: the order methods are listed in; plain cfg first, the baseline every other one is tested against
METHODS = ("cfg", "cfg-rescale", "cfg-interval", "cfgpp", "apg", "cfg-zero-star", "autoguidance")


def read(out: Path) -> dict[str, dict[str, dict[float, dict[str, list[float]]]]]:
    """model → method → scale → metric → the per-seed values."""
    data: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    for path in sorted(out.glob("*/*/compare.csv")):
        # METHOD@PART: more cells of METHOD, measured in a run of their own (e.g. cfg@low, cfg's scales below 1)
        model, method = path.parent.parent.name, path.parent.name.split("@")[0]
        for row in csv.DictReader(path.open()):
            cell = data[model][method][float(row["scale"])]
            cell[row["metric"]].append(float(row["value"]))
            if row["metric"] == "accuracy":
                cell["samples"].append(float(row["n"]))  # the samples each accuracy was read from
    return data


def mean_of(values: list[float]) -> float:
    return sum(values) / len(values)


def p_value(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def baseline(base: dict, cell: dict, quality: str) -> float:
    """The plain-cfg scale a cell is tested against: of the cfg cells not less accurate (their accuracy no more
    than two standard errors of the difference below the cell's, pooled over the seeds' samples: the
    two-proportion test), the one of best ``quality``: cfg's best point at that class fidelity, as the Pareto
    front reads it. When every cfg cell is less accurate, the most accurate one."""
    am, n = mean_of(cell["accuracy"]), sum(cell["samples"])

    def as_accurate(w: float) -> bool:
        aw, nw = mean_of(base[w]["accuracy"]), sum(base[w]["samples"])
        pooled = (am * n + aw * nw) / (n + nw)
        spread = max(pooled * (1 - pooled), 1 / (n + nw)) * (1 / n + 1 / nw)
        return aw >= am - 2 * spread**0.5

    peers = [w for w in base if as_accurate(w)]
    if not peers:
        return max(base, key=lambda w: mean_of(base[w]["accuracy"]))
    return min(peers, key=lambda w: mean_of(base[w][quality]))


def table(data, qualities: list[str]) -> list[str]:
    """One row per model, method and scale: accuracy and each quality metric (mean ± 95 % CI over the seeds),
    the plain-cfg cell it is tested against (:func:`baseline`), and Welch's p of each quality metric against it."""
    names = [q.upper() for q in qualities]
    lines = ["| model | method | scale | accuracy | " + " | ".join(names) + " | against cfg at (its accuracy, "
             + qualities[0].upper() + ") | p (Welch): "
             + " / ".join(q.upper() for q in qualities) + " |", "|---|---|---|---|" + "---|" * len(qualities) + "---|---|"]
    for model, methods in data.items():
        base = methods.get("cfg", {})
        for method in [m for m in METHODS if m in methods]:
            for scale, metrics in sorted(methods[method].items()):
                acc = metrics.get("accuracy", [])
                if not acc or not all(metrics.get(q) for q in qualities):
                    continue
                am, ac = mean_confidence_interval(acc)
                cells = []
                for q in qualities:
                    qm, qc = mean_confidence_interval(metrics[q])
                    cells.append(f"{qm:,.1f} ± {qc:,.1f}" if q != "kid" else f"{qm:,.0f} ± {qc:,.0f}")
                versus, p = "", ""
                if method != "cfg" and base:
                    w = baseline(base, metrics, qualities[0])
                    ref = base[w]
                    versus = f"w = {w:g} ({mean_of(ref['accuracy']):.3f}, {mean_of(ref[qualities[0]]):,.1f})"
                    p = " / ".join(p_value(welch_t_test(metrics[q], ref[q]).p)
                                   + (" (worse)" if mean_of(metrics[q]) > mean_of(ref[q]) else "")
                                   for q in qualities)
                lines.append(f"| {model} | {method} | {scale:g} | {am:.3f} ± {ac:.3f} | " + " | ".join(cells)
                             + f" | {versus} | {p} |")
    return lines


def plot(data, quality: str, out: Path) -> None:
    """Per model, the misclassified share (1 − accuracy, log scale, fewer up; a cell with none is drawn at one
    miss in its samples) against ``quality`` per method: up and to the left is better."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(data), figsize=(6.5 * len(data), 5), squeeze=False)
    for ax, (model, methods) in zip(axes[0], data.items()):
        for method in [m for m in METHODS if m in methods]:
            points = sorted((mean_of(v[quality]), max(1 - mean_of(v["accuracy"]), 1 / sum(v["samples"])), s)
                            for s, v in methods[method].items() if v.get(quality) and v.get("accuracy"))
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-" if method == "cfg" else "o--", label=method,
                    linewidth=2.5 if method == "cfg" else 1.2)
            for x, y, s in points:
                ax.annotate(f"{s:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_yaxis()
        ax.set(title=model, xlabel=f"{quality.upper()} (log; lower is better)",
               ylabel="1 − accuracy (log; fewer misread is better, up)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--metric", action="append", default=None,
                        help="a quality metric for the table (fid, kid; repeat for both: the default); the figure uses the first")
    parser.add_argument("-o", "--plot", type=Path, default=None, help="write the accuracy-against-quality figure here")
    args = parser.parse_args()
    data = read(args.out)
    qualities = args.metric or ["fid", "kid"]
    print("\n".join(table(data, qualities)))
    if args.plot is not None:
        plot(data, qualities[0], args.plot)


if __name__ == "__main__":
    main()
