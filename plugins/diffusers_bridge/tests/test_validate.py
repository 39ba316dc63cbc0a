"""The configs the bridge reads are untrusted: bounded before parsing, typed key by key, fuzzed.

Each input gives one DifftkError line or a working result: a scheduler config that is read builds
its schedule and sampler; a model folder that loads samples.
"""

import json
import shutil

import difftk
import pytest
import torch
from click.testing import CliRunner
from difftk.errors import CheckpointError, DifftkError
from difftk_cli.main import cli
from difftk_diffusers.config import SCHEDULERS, read_scheduler_config
from difftk_diffusers.validate import MAX_DEPTH
from diffusers import DDPMScheduler
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

DEEP = "[" * 100_000 + "]" * 100_000  # the depth bomb of issue 31: a RecursionError in json.loads


def one_line(err: BaseException) -> str:
    text = str(err)
    assert isinstance(err, DifftkError) and text and "\n" not in text, repr(err)
    return text


# --- JSON: depth and size before parsing ------------------------------------------------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                           max_leaves=20)


@pytest.mark.parametrize("name", ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json", "difftk.json"])
def test_a_100000_deep_file_is_one_line_before_parsing(name, ddpm_folder, tmp_path):
    (ddpm_folder / name).write_text(DEEP)
    with pytest.raises(CheckpointError) as err:
        difftk.load(ddpm_folder)
    assert f"nested more than {MAX_DEPTH} levels deep" in one_line(err.value) and name in str(err.value)


# --- the cases of issue 31, item 8 ------------------------------------------------------------------

def edit(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("file,key,value,message", [
    ("scheduler/scheduler_config.json", "beta_start", "abc", "beta_start 'abc' must be a number in (0, 1]"),
    ("scheduler/scheduler_config.json", "trained_betas", ["x"], "trained_betas must be a list of 1 to 1,000,000 numbers"),
    ("scheduler/scheduler_config.json", "num_train_timesteps", 1e12, "num_train_timesteps 1000000000000 must be an integer"),
    ("scheduler/scheduler_config.json", "clip_sample", "yes", "clip_sample 'yes' must be true or false"),
    ("unet/config.json", "sample_size", "abc", "sample_size 'abc' must be an integer from 1 to 4,096"),
    ("unet/config.json", "sample_size", [8, 8, 8], "sample_size [8, 8, 8] must be an integer or [height, width]"),
    ("unet/config.json", "sample_size", -4, "sample_size -4 must be an integer from 1 to 4,096"),
    ("unet/config.json", "sample_size", 0, "sample_size 0 must be an integer from 1 to 4,096"),
    ("unet/config.json", "sample_size", 1e6, "sample_size 1000000 must be an integer from 1 to 4,096"),
    ("unet/config.json", "sample_size", 5, "sample_size 5 must be a multiple of 2"),  # the UNet halves it once
    ("unet/config.json", "in_channels", "x", "in_channels 'x' must be an integer from 1 to 64"),
    ("unet/config.json", "block_out_channels", [100000, 100000], "block_out_channels[0] 100000 must be an integer"),
    ("unet/config.json", "block_out_channels", [16, 32], "more than its weight files"),
    ("unet/config.json", "num_class_embeds", 10**9, "num_class_embeds 1000000000 must be an integer from 1 to 100,000"),
])
def test_each_bad_value_is_one_line_naming_the_key(file, key, value, message, ddpm_folder, tmp_path):
    edit(ddpm_folder / file, **{key: value})
    with pytest.raises(CheckpointError) as err:
        difftk.load(ddpm_folder)
    assert message in one_line(err.value)
    result = CliRunner().invoke(cli, ["sample", str(ddpm_folder), "-n", "1", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "Traceback" not in result.output and message in result.stderr


# --- fuzzing: each input is one line or a working result ---------------------------------------------

#: values that are wrong in kind or range for some key, beside each key's valid ones
JUNK = st.sampled_from(["abc", "", -4, 0, 1e6, 1e308, -1e-9, 0.5, 2, True, None, [], [1, 2], ["x"], {"a": 1}, [[1]]])
#: valid values of the keys that matter, per key
GOOD = {
    "num_train_timesteps": st.sampled_from([2, 10, 1000]), "beta_start": st.sampled_from([1e-4, 0.00085]),
    "beta_end": st.sampled_from([0.012, 0.02]), "beta_schedule": st.sampled_from(["linear", "scaled_linear",
                                                                                  "squaredcos_cap_v2", "sigmoid"]),
    "prediction_type": st.sampled_from(["epsilon", "v_prediction", "sample"]),
    "timestep_spacing": st.sampled_from(["leading", "trailing", "linspace"]), "steps_offset": st.sampled_from([0, 1]),
    "solver_order": st.sampled_from([1, 2, 3]), "use_karras_sigmas": st.booleans(), "clip_sample": st.booleans(),
    "rescale_betas_zero_snr": st.booleans(), "lower_order_final": st.booleans(),
    "algorithm_type": st.sampled_from(["dpmsolver++", "sde-dpmsolver++", "dpmsolver"]),
    "solver_type": st.sampled_from(["midpoint", "bh1", "bh2"]), "variance_type": st.sampled_from(["fixed_small", "fixed_large"]),
    "shift": st.sampled_from([1.0, 3.0]),
}


@st.composite
def scheduler_configs(draw):
    """A scheduler config of a random class (or an unknown one): each key valid, junk or left out."""
    config = {"_class_name": draw(st.sampled_from([*SCHEDULERS, "PNDMScheduler", 7]))}
    for key, good in GOOD.items():
        pick = draw(st.integers(0, 3))
        if pick == 1:
            config[key] = draw(good)
        elif pick == 2:
            config[key] = draw(JUNK)
    if draw(st.booleans()):
        config["trained_betas"] = draw(st.one_of(JUNK, st.lists(st.floats(1e-5, 0.5), min_size=1, max_size=12)))
    return config


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=scheduler_configs())
@example(config={"_class_name": "DDPMScheduler", "beta_start": "abc"})
@example(config={"_class_name": "DDIMScheduler", "trained_betas": ["x"], "num_train_timesteps": 1})
@example(config={"_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 10, "trained_betas": [0.1] * 10})
@example(config={"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": "abc"})
@example(config={"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": True, "rescale_betas_zero_snr": True})
def test_fuzzed_scheduler_configs_are_one_line_or_build_their_components(config, tmp_path):
    path = tmp_path / "scheduler_config.json"
    path.write_text(json.dumps(config))
    try:
        read = read_scheduler_config(path)
    except DifftkError as err:
        one_line(err)
        return
    schedule = difftk.create("schedule", read.schedule["name"], **read.schedule["options"])
    sampler = difftk.create("sampler", read.sampler["name"], **read.sampler["options"])
    grid = sampler.time_grid(schedule, min(3, read.T))
    assert len(grid) >= 1 and 0 < grid[-1] <= grid[0] <= 1


@st.composite
def unet_configs(draw):
    """The tiny UNet's config with a few keys replaced by junk or by other plausible values."""
    config = {"sample_size": 8, "in_channels": 3, "out_channels": 3, "block_out_channels": [8, 16], "layers_per_block": 1,
              "norm_num_groups": 4}
    keys = draw(st.lists(st.sampled_from([*config, "num_class_embeds", "time_embedding_dim", "down_block_types"]),
                         min_size=1, max_size=3, unique=True))
    plausible = {"sample_size": st.sampled_from([4, 8, 16, [8, 16], [8, 8, 8]]), "in_channels": st.sampled_from([1, 3, 4]),
                 "block_out_channels": st.sampled_from([[8], [8, 16], [4, 8, 16], [16, 32]]),
                 "norm_num_groups": st.sampled_from([1, 3, 8])}
    for key in keys:
        config[key] = draw(st.one_of(JUNK, plausible.get(key, JUNK)))
    return config


@pytest.fixture(scope="module")
def saved_pipeline(unet, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    from diffusers import DDPMPipeline

    DDPMPipeline(unet=unet(), scheduler=DDPMScheduler(clip_sample=False)).save_pretrained(folder)
    return folder


def test_a_config_asking_for_weights_the_file_lacks_is_one_line(saved_pipeline, tmp_path):
    """A class embedding in config.json that the weight file does not hold: diffusers would fill it with
    uninitialised memory and warn; difftk refuses to load it."""
    shutil.copytree(saved_pipeline, tmp_path, dirs_exist_ok=True)
    edit(tmp_path / "unet" / "config.json", num_class_embeds=2)
    with pytest.raises(DifftkError, match="lacks class_embedding.weight") as error:
        difftk.load(tmp_path)
    one_line(error.value)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=unet_configs())
def test_fuzzed_unet_configs_are_one_line_or_a_model_that_samples(saved_pipeline, tmp_path_factory, changes):
    folder = tmp_path_factory.mktemp("fuzzed")
    shutil.copytree(saved_pipeline, folder, dirs_exist_ok=True)
    edit(folder / "unet" / "config.json", **changes)
    try:
        model = difftk.load(folder)
    except DifftkError as err:
        one_line(err)
        return
    x = model.sample(1, steps=2, labels=0 if model.num_classes else None)
    assert x.shape == (1, *model.data_shape) and bool(torch.isfinite(x).all())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=st.dictionaries(st.sampled_from(["_class_name", "unet", "scheduler", "vae"]),
                       st.one_of(json_values, st.just(["diffusers", "UNet2DModel"]),
                                 st.sampled_from(["DDPMPipeline", "DDIMPipeline", ["diffusers", "EulerDiscreteScheduler"]]))))
@example(index={"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"], "scheduler": [1, 2]})
def test_fuzzed_model_indexes_are_one_line_or_a_model(saved_pipeline, tmp_path_factory, index):
    folder = tmp_path_factory.mktemp("index")
    shutil.copytree(saved_pipeline, folder, dirs_exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps(index))
    try:
        model = difftk.load(folder)
    except DifftkError as err:
        one_line(err)
        return
    assert model.data_shape == (3, 8, 8)


def test_a_sharded_unet_counts_all_its_shards_against_the_config(unet, tmp_path):
    """The weights bound sums every shard: a UNet saved in 50 kB shards (an index and its files) still loads."""
    net = unet()
    net.save_pretrained(tmp_path / "sharded", max_shard_size="50KB")
    assert (tmp_path / "sharded" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    DDPMScheduler(clip_sample=False).save_config(tmp_path / "sharded")
    model = difftk.load(tmp_path / "sharded")
    assert all(torch.equal(a, b) for a, b in zip(model.denoiser.unet.state_dict().values(), net.state_dict().values(),
                                                 strict=True))
