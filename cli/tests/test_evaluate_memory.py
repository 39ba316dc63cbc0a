"""`evaluate -n` far beyond memory, under an address-space limit (``ulimit -v``): refused in one line at
once, before anything of that size is allocated (issue 31, item 5)."""

import subprocess
import sys
import textwrap
import time

import difftk.testing.toys as toys
from click.testing import CliRunner
from difftk_cli.main import cli

#: runs in a fresh process: the toy plugin, then RLIMIT_AS = what is mapped now + 1.5 GB, then the command
SCRIPT = textwrap.dedent('''
    import resource, sys
    import difftk.testing.toys as toys
    from difftk.testing import plugin_host
    from difftk_cli.main import main

    with open("/proc/self/status") as fh:
        mapped = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    limit = mapped + 1_500_000_000
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with plugin_host() as host:
        host.register(toys, name="toys")
        sys.argv = ["difftk", *sys.argv[1:]]
        main()
''')


def test_evaluate_with_an_absurd_n_is_refused_in_bounded_memory(register_plugin, tmp_path, monkeypatch):
    assert register_plugin(toys, "toys")
    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke
    assert run(cli, ["compose", "--schedule", "linear", "--sampler", "ddim", "--denoiser", "tiny", "--objective",
                     "simple", "--set", "schedule.T=50", "-o", "p.toml"]).exit_code == 0
    trained = run(cli, ["train", "p.toml", "--data", "toy-points", "--steps", "1", "--batch-size", "8", "--out", "run",
                        "--sample-every", "0"])
    assert trained.exit_code == 0, trained.output
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", SCRIPT, "evaluate", "run", "--metric", "sliced-wasserstein",
                           "-n", "1000000000"], capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("error: n=1,000,000,000 samples of 2 would take 16.0 GB of memory at once")
    assert "give n ≤ " in lines[0] and "MemoryError" not in done.stderr
    assert time.monotonic() - start < 120  # at once: nothing of n's size was drawn first
