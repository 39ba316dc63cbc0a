"""benchmarks/guidance_study.py reads the study's folders as the page reports them: cfg@low adds cells to
cfg, each cell is tested against cfg's best cell at least as accurate, and the direction is shown."""

import csv
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("guidance_study", REPO / "benchmarks" / "guidance_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(folder: Path, cells: dict[float, tuple[list[float], list[float]]]) -> None:
    """cells: scale → (accuracy per seed, fid per seed), n = 1,000 each."""
    folder.mkdir(parents=True)
    with (folder / "compare.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["checkpoint", "scale", "seed", "metric", "value", "n"])
        for scale, (acc, fid) in cells.items():
            for seed, (a, q) in enumerate(zip(acc, fid)):
                out.writerow(["m", scale, seed, "accuracy", a, 1000])
                out.writerow(["m", scale, seed, "fid", q, 1000])


def test_cells_are_tested_against_cfgs_best_cell_at_least_as_accurate(study, tmp_path):
    write(tmp_path / "m" / "cfg", {0.0: ([0.97, 0.972, 0.974], [100, 102, 104]),
                                   1.0: ([0.999, 0.999, 0.999], [210, 215, 220]),
                                   3.0: ([1.0, 1.0, 1.0], [430, 435, 440])})
    write(tmp_path / "m" / "cfg@low", {0.5: ([0.99, 0.99, 0.99], [150, 152, 154])})
    write(tmp_path / "m" / "apg", {1.0: ([0.999, 0.999, 0.999], [150, 158, 166]),
                                   3.0: ([1.0, 1.0, 1.0], [330, 339, 348])})
    write(tmp_path / "m" / "autoguidance", {0.5: ([0.979, 0.979, 0.979], [93, 95, 97])})
    data = study.read(tmp_path)
    assert sorted(data["m"]["cfg"]) == [0.0, 0.5, 1.0, 3.0]  # cfg@low's cells are cfg's
    rows = {(r.split(" | ")[1], r.split(" | ")[2]): r for r in study.table(data, ["fid"])[2:]}
    # APG at w = 1 is as accurate as cfg at w = 1 (and more than 0.5), and better: tested against w = 1
    assert "w = 1 (0.999, 215.0)" in rows["apg", "1"] and "(worse)" not in rows["apg", "1"]
    # APG at w = 3 reads 1.000; cfg's 0.999 at w = 1 is within two standard errors of it, and w = 1 dominates it
    assert "w = 1 (0.999, 215.0)" in rows["apg", "3"] and rows["apg", "3"].endswith("< 0.001 (worse) |")
    # autoguidance at 0.979: cfg's 0.972 at w = 0 is not less accurate by the two-proportion test, and is cfg's best
    assert "w = 0 (0.972, 102.0)" in rows["autoguidance", "0.5"] and "(worse)" not in rows["autoguidance", "0.5"]
    # at 0.985, cfg at 0 is significantly less accurate: the reference is cfg's best cell above it, w = 0.5
    write(tmp_path / "m" / "cfgpp", {0.6: ([0.985, 0.985, 0.985], [120, 121, 122])})
    rows = {(r.split(" | ")[1], r.split(" | ")[2]): r for r in study.table(study.read(tmp_path), ["fid"])[2:]}
    assert "w = 0.5 (0.990, 152.0)" in rows["cfgpp", "0.6"]
