"""Data-parallel training on torch.distributed (gloo on the CPU): two real processes, checked against
one process on the combined batch, against each other, and across a resume."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from difftk.checkpoint.files import read_checkpoint
from difftk.testing.ranks import launch_ranks
from safetensors.torch import load_file

WORKER = textwrap.dedent('''
    import sys
    import attrs
    import difftk
    import difftk.testing.toys as toys
    import torch
    from difftk.components import plugins
    from difftk.runtime import distributed
    from difftk.checkpoint.files import read_checkpoint
    from difftk.data.pipeline_data import describe_dataset, size_to_data, load_dataset
    from difftk.maths.objectives import mean_flat
    from difftk.training.config import TrainConfig
    from difftk.training.job import check_resumable
    from difftk.training.trainer import Trainer
    from safetensors.torch import save_file

    @attrs.frozen
    class FixedTimeLoss:
        """A loss with no randomness: ‖denoiser(x0, t=0.5) − x0‖², so runs can be compared exactly."""
        def loss(self, denoiser, schedule, x0, cond=None, generator=None):
            t = torch.full((x0.shape[0],), 0.5, dtype=x0.dtype)
            return mean_flat((denoiser(x0, t, cond=cond) - x0) ** 2)

    class Extra:
        @difftk.hookimpl
        def difftk_register_components(self, register):
            register.add_objective("fixed-t", FixedTimeLoss)

    torch.set_num_threads(1)
    objective, out, steps, batch, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
    workers = int(sys.argv[6])
    plugins.host().register(toys, name="toys")
    plugins.host().register(Extra(), name="extra")
    ranks, device = distributed.init(torch.device("cpu"))
    spec = difftk.compose(schedule={"name": "linear", "options": {"T": 50}}, sampler="ddim", denoiser="tiny",
                          objective=objective).spec
    data = load_dataset("toy-points")[0].subset(torch.arange(40))
    torch.manual_seed(5)
    pipeline, _ = size_to_data(spec, data)
    config = TrainConfig(steps=steps, batch_size=batch, warmup=2, seed=5, checkpoint_every=100, sample_every=0, log_every=1,
                         workers=workers)
    trainer = Trainer(pipeline, data, config, out=out, dataset_info=describe_dataset(data))
    if resume:
        ckpt = read_checkpoint(out)
        check_resumable(ckpt, pipeline, trainer.dataset_info)
        trainer.load_state(ckpt)
    elif ranks.main:
        trainer.paths.prepare(False)
    distributed.barrier(ranks)
    trainer.fit()
    save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()}, f"{out}/rank{ranks.rank}.safetensors")
    distributed.finish()
    import os
    os._exit(0)  # skip interpreter teardown: gloo's threads sometimes abort it ("terminate called…") after the work is done
''')


def run(tmp_path, out, *, nproc, objective="simple", steps=4, batch=4, resume=False, workers=0):
    """Start ``nproc`` worker processes (as torchrun would) and read each rank's weights."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    for code, stderr in launch_ranks([script, objective, out, steps, batch, "1" if resume else "0", workers], nproc):
        assert code == 0, stderr[-2000:]
    return [load_file(str(out / f"rank{r}.safetensors")) for r in range(nproc)]


def test_two_processes_equal_one_process_on_the_combined_batch(tmp_path):
    """With a loss that has no randomness, DDP over 2 ranks of batch 4 takes the same steps as one
    process with batch 8: the same global batches, the averaged gradient, the same AdamW update."""
    two = run(tmp_path, tmp_path / "two", nproc=2, objective="fixed-t", steps=5, batch=4)
    one = run(tmp_path, tmp_path / "one", nproc=1, objective="fixed-t", steps=5, batch=8)
    for name in one[0]:
        assert torch.equal(two[0][name], two[1][name]), name
        assert torch.allclose(two[0][name], one[0][name], rtol=1e-5, atol=1e-6), name


def test_ranks_stay_identical_one_checkpoint_is_written_and_resume_is_exact(tmp_path):
    whole = run(tmp_path, tmp_path / "whole", nproc=2, steps=6)
    for name in whole[0]:
        assert torch.equal(whole[0][name], whole[1][name]), name  # DDP: every rank holds the same weights
    files = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert files == ["checkpoint.safetensors", "log.jsonl", "rank0.safetensors", "rank1.safetensors"]
    assert len((tmp_path / "whole" / "log.jsonl").read_text().splitlines()) == 6  # written once, by rank 0
    ckpt = read_checkpoint(tmp_path / "whole")
    assert {"rng/noise", "rng/noise.1"} <= set(ckpt.tensors) and ckpt.step == 6
    assert not torch.equal(ckpt.tensors["rng/noise"], ckpt.tensors["rng/noise.1"])  # each rank its own noise
    run(tmp_path, tmp_path / "part", nproc=2, steps=3)
    run(tmp_path, tmp_path / "part", nproc=2, steps=6, resume=True)
    a, b = ckpt.tensors, read_checkpoint(tmp_path / "part").tensors
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_loader_workers_change_nothing_under_ddp(tmp_path):
    """Each rank reads its share of every global batch ahead with its own loader workers: a run of
    3 steps with 1 worker per rank, resumed to 5 with 2, ends as the straight run without workers."""
    run(tmp_path, tmp_path / "whole", nproc=2, steps=5)
    run(tmp_path, tmp_path / "part", nproc=2, steps=3, workers=1)
    run(tmp_path, tmp_path / "part", nproc=2, steps=5, resume=True, workers=2)
    a, b = read_checkpoint(tmp_path / "whole").tensors, read_checkpoint(tmp_path / "part").tensors
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("nproc", [2])
def test_the_cli_launches_through_torchrun(tmp_path, nproc):
    difftk = os.path.join(os.path.dirname(sys.executable), "difftk")
    compose = [difftk, "compose", "--schedule", "linear", "--sampler", "ddim", "--denoiser", "unet-attn", "--objective",
               "simple", "--set", "denoiser.base_channels=8", "--set", "denoiser.norm_groups=4", "--set",
               "denoiser.channel_mult=1,2", "--set", "denoiser.num_res_blocks=1", "--set",
               "denoiser.attention_resolutions=14", "--set", "denoiser.dropout=0", "-o", str(tmp_path / "p.toml")]
    assert subprocess.run(compose, capture_output=True).returncode == 0
    result = subprocess.run([difftk, "train", str(tmp_path / "p.toml"), "--data", "mnist", "--steps", "2", "--batch-size", "2",
                             "--out", str(tmp_path / "run"), "--nproc", str(nproc), "--sample-every", "0"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("done: step 2") == 1  # one console: rank 0's
    assert read_checkpoint(tmp_path / "run").step == 2
    again = subprocess.run([difftk, "train", str(tmp_path / "p.toml"), "--data", "mnist", "--steps", "3",
                            "--out", str(tmp_path / "run"), "--resume"], capture_output=True, text=True)
    assert again.returncode == 2 and "resume with --nproc 2" in again.stderr
