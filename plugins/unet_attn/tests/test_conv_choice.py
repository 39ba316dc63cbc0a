"""The 3×3 convolution algorithm chosen by measurement: timing, choice, memory, cache file, forcing.

Timers are fakes: every test is about the selection logic, none about this machine's speed.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from difftk_unet_attn import conv, conv_choice
from difftk_unet_attn.conv import Conv3x3, force_conv3x3
from difftk_unet_attn.conv_choice import DEFAULT, FORMAT, MARGIN, MIN_TIMED_MACS, Chooser, Shape, measure, pick
from hypothesis import given
from hypothesis import strategies as st

BIG = Shape(64, 64, 64, 28, 28)  # a layer of the MNIST network, above MIN_TIMED_MACS
needs_nnpack = pytest.mark.skipif(not torch._nnpack_available(), reason="this torch build has no NNPACK")


class Clock:
    """A timer that a candidate advances by its cost; records the order of calls."""

    def __init__(self) -> None:
        self.now, self.calls = 0.0, []

    def __call__(self) -> float:
        return self.now

    def candidates(self, costs: dict[str, list[float]]):
        """Candidates whose n-th call costs ``costs[name][n]`` fake seconds."""
        counts = dict.fromkeys(costs, 0)

        def run(name):
            def call():
                self.calls.append(name)
                self.now += costs[name][counts[name]]
                counts[name] += 1
            return call

        return {name: run(name) for name in costs}


def fake_candidates(costs: dict[str, float], made: list[Shape] | None = None):
    """A factory of candidates with constant fake costs on ``clock``; records each shape measured."""
    clock = Clock()

    def factory(shape: Shape):
        if made is not None:
            made.append(shape)
        return clock.candidates({name: [cost] * 10 for name, cost in costs.items()})

    return clock, factory


def test_measure_interleaves_after_one_untimed_call_each_and_keeps_each_minimum():
    clock = Clock()
    runs = clock.candidates({"onednn": [100.0, 5.0, 4.0, 6.0], "nnpack": [100.0, 3.0, 7.0, 2.5]})
    times = measure(runs, rounds=3, timer=clock)
    assert clock.calls == ["onednn", "nnpack"] * 4  # a, b, then a, b, a, b, a, b
    assert times == {"onednn": 4.0, "nnpack": 2.5}  # the untimed first calls (100 s) count nowhere


@given(default=st.floats(1e-6, 1.0), other=st.floats(1e-6, 1.0))
def test_another_algorithm_replaces_the_default_only_when_faster_by_the_margin(default, other):
    choice = pick({"onednn": default, "nnpack": other})
    assert choice == ("nnpack" if other < (1.0 - MARGIN) * default else "onednn")
    assert pick({"nnpack": other}) == "nnpack"  # a lone candidate is chosen whatever its time


def test_each_shape_is_measured_once_per_process(tmp_path):
    made = []
    clock, factory = fake_candidates({"onednn": 2.0, "nnpack": 1.0}, made)
    chooser = Chooser(None, timer=clock)
    other = Shape(64, 128, 128, 14, 14)
    assert chooser.choose(BIG, factory) == "nnpack"
    assert chooser.choose(BIG, factory) == "nnpack"
    assert chooser.choose(other, factory) == "nnpack"
    assert made == [BIG, other]


def test_a_small_convolution_takes_the_default_untimed():
    made = []
    clock, factory = fake_candidates({"onednn": 2.0, "nnpack": 1.0}, made)
    small = Shape(4, 8, 8, 28, 28)
    assert small.macs < MIN_TIMED_MACS <= BIG.macs
    assert Chooser(None, timer=clock).choose(small, factory) == DEFAULT and made == []


def test_the_slower_algorithm_is_never_chosen():
    for costs, expected in (({"onednn": 1.0, "nnpack": 2.0}, "onednn"), ({"onednn": 2.0, "nnpack": 1.0}, "nnpack"),
                            ({"onednn": 1.0}, "onednn")):
        clock, factory = fake_candidates(costs)
        assert Chooser(None, timer=clock).choose(BIG, factory) == expected


def test_the_cache_file_gives_a_later_process_the_same_choice_without_measuring(tmp_path):
    path = tmp_path / "cache" / "conv3x3.json"
    clock, factory = fake_candidates({"onednn": 2.0, "nnpack": 1.0})
    assert Chooser(path, timer=clock).choose(BIG, factory) == "nnpack"
    stored = json.loads(path.read_text())
    assert stored["format"] == FORMAT
    (machine,) = stored["choices"]
    assert stored["choices"][machine] == {"64,64,64,28,28": "nnpack"}
    assert "torch " + torch.__version__ in machine and f"{torch.get_num_threads()} threads" in machine

    made = []
    clock, factory = fake_candidates({"onednn": 1.0, "nnpack": 2.0}, made)  # now timing would say oneDNN
    assert Chooser(path, timer=clock).choose(BIG, factory) == "nnpack" and made == []
    assert not list(path.parent.glob(".*.tmp"))  # written atomically: no temporary left


def test_another_machine_key_measures_again_and_both_entries_are_kept(tmp_path, monkeypatch):
    path = tmp_path / "conv3x3.json"
    clock, factory = fake_candidates({"onednn": 2.0, "nnpack": 1.0})
    Chooser(path, timer=clock).choose(BIG, factory)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)
    made = []
    clock, factory = fake_candidates({"onednn": 1.0, "nnpack": 2.0}, made)
    assert Chooser(path, timer=clock).choose(BIG, factory) == "onednn" and made == [BIG]
    assert sorted(json.loads(path.read_text())["choices"][m]["64,64,64,28,28"]
                  for m in json.loads(path.read_text())["choices"]) == ["nnpack", "onednn"]


@pytest.mark.parametrize("content", [
    b"not json", b"\xff\xfe", b"[]", b'{"format": "other", "choices": {}}', b'{"format": "%s", "choices": []}' % FORMAT.encode(),
    b'{"format": "%s", "choices": {"m": {"64,64,64,28,28": "winograd-from-elsewhere"}}}' % FORMAT.encode(),
    b"[" * 10_000, b" " * 2_000_000,
], ids=["text", "binary", "list", "format", "choices-list", "unknown-algorithm", "deep", "huge"])
def test_a_malformed_cache_file_is_ignored_and_replaced(tmp_path, content):
    path = tmp_path / "conv3x3.json"
    path.write_bytes(content)
    made = []
    clock, factory = fake_candidates({"onednn": 2.0, "nnpack": 1.0}, made)
    assert Chooser(path, timer=clock).choose(BIG, factory) == "nnpack" and made == [BIG]
    assert conv_choice.read_choices(path) and json.loads(path.read_text())["format"] == FORMAT


def test_a_choice_another_process_wrote_first_wins(tmp_path):
    """Processes started together (ranks, a resumed run) settle on the choice written first."""
    path = tmp_path / "conv3x3.json"
    clock, factory = fake_candidates({"onednn": 2.0, "nnpack": 1.0})
    chooser = Chooser(path, timer=clock)
    assert chooser.choose(Shape(64, 64, 64, 14, 14), factory) == "nnpack"  # the file now exists, without BIG

    def racing(shape):  # while this process measures, another writes its own choice
        choices = conv_choice.read_choices(path)
        choices[conv_choice.machine_key()][shape.key()] = "onednn"
        path.write_text(json.dumps({"format": FORMAT, "choices": choices}))
        return factory(shape)

    assert chooser.choose(BIG, racing) == "onednn" and chooser.choose(BIG, factory) == "onednn"
    assert set(conv_choice.read_choices(path)[conv_choice.machine_key()].values()) == {"nnpack", "onednn"}


def test_an_unwritable_cache_warns_once_and_keeps_the_choice_in_memory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    made = []
    clock, factory = fake_candidates({"onednn": 2.0, "nnpack": 1.0}, made)
    chooser = Chooser(blocker / "conv3x3.json", timer=clock)
    with pytest.warns(RuntimeWarning, match="convolution choices not saved: cannot write"):
        assert chooser.choose(BIG, factory) == "nnpack"
    assert chooser.choose(BIG, factory) == "nnpack" and made == [BIG]


def test_the_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(conv_choice.CACHE_ENV, raising=False)
    assert conv_choice.default_cache_path() == tmp_path / "difftk" / "conv3x3.json"
    monkeypatch.setenv(conv_choice.CACHE_ENV, str(tmp_path / "elsewhere.json"))
    assert conv_choice.default_cache_path() == tmp_path / "elsewhere.json"
    monkeypatch.setenv(conv_choice.CACHE_ENV, "off")
    assert conv_choice.default_cache_path() is None
    clock, factory = fake_candidates({"onednn": 2.0, "nnpack": 1.0})
    assert Chooser(timer=clock).choose(BIG, factory) == "nnpack" and not list(tmp_path.rglob("*.json"))


def test_a_forced_choice_wins_over_measurement_and_the_environment(monkeypatch):
    measured = []
    monkeypatch.setattr(conv, "chooser", Chooser(None))
    monkeypatch.setattr(conv.chooser, "choose", lambda shape, factory: measured.append(shape) or "onednn")
    monkeypatch.setenv(conv.ENV, "nnpack")
    assert conv.algorithm(BIG) == "nnpack"
    with force_conv3x3("onednn"):
        assert conv.algorithm(BIG) == "onednn"
        with force_conv3x3("auto"):
            assert conv.algorithm(BIG) == "nnpack"  # back to the environment's choice
    monkeypatch.setenv(conv.ENV, "AUTO")
    assert conv.algorithm(BIG) == "onednn" and measured == [BIG]
    monkeypatch.setenv(conv.ENV, "fastest")
    with pytest.warns(RuntimeWarning, match="DIFFTK_CONV3X3='fastest' is not one of auto, onednn, nnpack"):
        assert conv.algorithm(BIG) == "onednn"
    with pytest.raises(ValueError, match="unknown 3×3 convolution algorithm 'fast'"), force_conv3x3("fast"):
        pass


@needs_nnpack
@pytest.mark.parametrize("forward", ["onednn", "nnpack"])
@pytest.mark.parametrize("input_grad", ["onednn", "nnpack"])
@pytest.mark.parametrize("bias", ["own", "given", "none"])
def test_every_combination_of_algorithms_computes_conv2d_and_its_gradients(monkeypatch, forward, input_grad, bias):
    """Forward and input gradient each take the algorithm chosen for their own shape ([N, 8→12]
    forward, [N, 12→8] input gradient); every mix gives F.conv2d's values and gradients."""
    monkeypatch.setattr(conv, "algorithm", lambda shape: forward if shape.C_in == 8 else input_grad)
    torch.manual_seed(0)
    layer = Conv3x3(8, 12)
    if bias == "none":
        layer.bias = None
    extra = torch.randn(12, requires_grad=True) if bias == "given" else None
    x = torch.randn(4, 8, 14, 14, requires_grad=True)
    g = torch.randn(4, 12, 14, 14)
    out = layer(x, extra)
    b = extra if bias == "given" else layer.bias
    params = [p for p in (x, layer.weight, b) if p is not None]
    grads = torch.autograd.grad(out, params, g)
    ref = F.conv2d(x, layer.weight, b, padding=1)
    ref_grads = torch.autograd.grad(ref, params, g)
    with torch.no_grad():
        assert torch.allclose(layer(x, extra), ref, rtol=1e-5, atol=1e-5)  # inference, too
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max())
    # NNPACK was taken where chosen, and only there
    assert torch.equal(out, ref) == (forward == "onednn") and torch.equal(grads[0], ref_grads[0]) == (input_grad == "onednn")


@needs_nnpack
def test_the_network_measures_its_own_shapes_and_matches_onednn(monkeypatch, tmp_path):
    """Under measurement (here a fake clock on which NNPACK wins), a training step's output and
    gradients equal those with every convolution forced to oneDNN, to float32 rounding."""
    from difftk_unet_attn import UNetAttn

    clock = Clock()
    chooser = Chooser(tmp_path / "conv3x3.json", timer=clock)
    monkeypatch.setattr(conv, "chooser", chooser)
    monkeypatch.setattr(conv_choice, "MIN_TIMED_MACS", 0)
    shapes = []

    def fake(shape):
        shapes.append(shape)
        return clock.candidates({"onednn": [2.0] * 10, "nnpack": [1.0] * 10})

    monkeypatch.setattr(conv, "_candidates", fake)
    monkeypatch.delenv(conv.ENV, raising=False)  # the suite pins oneDNN (conftest.py)
    torch.manual_seed(0)
    model = UNetAttn(base_channels=16, norm_groups=8, channel_mult=(1, 2), num_res_blocks=1,
                     attention_resolutions=(14,), num_heads=2, dropout=0.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, t = torch.randn(2, 1, 28, 28), torch.rand(2)
    results = []
    for forced in (None, "onednn"):
        with force_conv3x3(forced):
            model.zero_grad()
            out = model(x, t)
            out.square().mean().backward()
        results.append((out.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])))
    (out, grad), (ref, ref_grad) = results
    assert not torch.equal(out, ref) and torch.allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert torch.allclose(grad, ref_grad, rtol=1e-3, atol=1e-5 * ref_grad.abs().max())
    # every 3×3 shape of the network once, forward and input gradient: conv_in's input gradient is not needed
    assert len(shapes) == len(set(shapes)) and Shape(2, 1, 16, 28, 28) in shapes
    assert set(json.loads((tmp_path / "conv3x3.json").read_text())["choices"].popitem()[1].values()) == {"nnpack"}


@needs_nnpack
def test_measuring_leaves_the_global_random_stream_alone(monkeypatch):
    """Timing draws its inputs from a generator of its own: a run that measures a shape draws the
    same noise and dropout masks afterwards as one that read the choice (a resumed run)."""
    monkeypatch.setattr(conv, "chooser", Chooser(None, rounds=1))
    monkeypatch.delenv(conv.ENV, raising=False)
    torch.manual_seed(3)
    state = torch.get_rng_state()
    shape = Shape(16, 32, 32, 28, 28)
    assert shape.macs >= MIN_TIMED_MACS and conv.algorithm(shape) in ("onednn", "nnpack")
    assert conv.chooser.chosen() == {"16,32,32,28,28": conv.algorithm(shape)}
    assert torch.equal(torch.get_rng_state(), state)
