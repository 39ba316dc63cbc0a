"""Draws of samples split over processes (gloo on the CPU): the batches are shared out whole, process 0
gathers them, and the samples — of Model.sample and of an evaluation context serving a metric's
draws — equal one process's bit for bit."""

import textwrap

import torch
from difftk.runtime.distributed import Ranks, share
from difftk.testing.ranks import launch_ranks
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

WORKER = textwrap.dedent('''
    import os, sys
    import difftk
    import difftk.testing.toys as toys
    import torch
    from difftk.components import plugins
    from difftk.data.pipeline_data import size_to_data, load_dataset
    from difftk.evaluation.context import EvalContext
    from difftk.model import Model
    from difftk.runtime import distributed
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    plugins.host().register(toys, name="toys")
    ranks, _ = distributed.init(torch.device("cpu"))
    spec = difftk.compose(schedule={"name": "linear", "options": {"T": 50}},
                          sampler={"name": "ddim", "options": {"eta": 1.0}}, denoiser="tiny",
                          objective="simple").spec
    data = load_dataset("toy-images")[0]
    torch.manual_seed(5)
    pipeline, _ = size_to_data(spec, data)  # class-conditional: toy-images has 2 classes
    model = Model(pipeline, pipeline.denoiser.eval(), data)
    shared = ranks if ranks.distributed else None
    out = {"sample": model.sample(7, steps=4, seed=3, batch_size=2, ranks=shared)}  # batches 2+2+2+1 over the ranks
    out["one batch"] = model.sample(3, steps=4, seed=3, batch_size=8, ranks=shared)  # process 1 has no batch
    out["rows"] = distributed.gather_rows(torch.arange(5 * ranks.rank + 3.0).view(-1, 1), ranks, chunk=2)  # 3 and 8 rows
    context = EvalContext(model=model, data=None, seed=9, steps=3, batch_size=3, ranks=ranks)
    if ranks.main:
        try:
            out["draw"] = context.samples(7)
            out["labelled draw"] = context.samples(5, torch.tensor([1, 1, 0, 1, 0]), offset=2)
            out["kept"] = torch.tensor(context.samples(7) is out["draw"])  # no second draw: the others are not asked
        finally:
            context.release()
        save_file({k: v.contiguous() for k, v in out.items()}, sys.argv[1])
    else:
        assert out["sample"] is None and out["one batch"] is None and out["rows"] is None
        context.serve()
    distributed.finish()
    os._exit(0)  # skip interpreter teardown: gloo's threads sometimes abort it after the work is done
''')


def draw(tmp_path, nproc: int) -> dict:
    """Run the worker in ``nproc`` processes (as torchrun would) and read what process 0 wrote."""
    script, out = tmp_path / "worker.py", tmp_path / f"out{nproc}.safetensors"
    script.write_text(WORKER)
    for code, stderr in launch_ranks([script, out], nproc):
        assert code == 0, stderr[-2000:]
    return load_file(str(out))


def test_two_processes_draw_what_one_process_draws_bit_for_bit(tmp_path):
    one, two = draw(tmp_path, 1), draw(tmp_path, 2)
    assert one.keys() == two.keys() == {"sample", "one batch", "rows", "draw", "labelled draw", "kept"}
    for key in one.keys() - {"rows"}:
        assert torch.equal(one[key], two[key]), key
    # rank r gave rows 0 … 5r+2, 2 at a time: gathered in rank order, the padding dropped
    assert two["rows"].flatten().tolist() == [0, 1, 2] + list(range(8)) and one["rows"].flatten().tolist() == [0, 1, 2]
    assert one["sample"].shape == (7, 1, 8, 8) and bool(one["kept"]) and bool(two["kept"])
    assert not torch.equal(one["draw"][:5], one["labelled draw"])  # the labels and seed offset are passed on


@settings(max_examples=40, deadline=None)
@given(count=st.integers(0, 50), world=st.integers(1, 8))
def test_the_blocks_of_the_ranks_are_the_batches_in_order_split_evenly(count, world):
    blocks = [share(count, Ranks(rank, world)) for rank in range(world)]
    assert [b for block in blocks for b in block] == list(range(count))
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
