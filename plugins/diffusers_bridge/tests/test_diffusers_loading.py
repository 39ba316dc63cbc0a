"""difftk.load reads diffusers folders as pipelines of registered components, and says in one line what it cannot read."""

import json

import difftk
import numpy as np
import pytest
import torch
from difftk.errors import CheckpointError, UnknownComponentError
from difftk_diffusers import load as load_diffusers
from diffusers import DDIMScheduler, DDPMScheduler

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def spec(model):
    return {kind: (c.name, c.options_dict) for kind, c in model.pipeline.spec.components}


def test_a_ddpm_pipeline_folder_is_a_model_of_registered_components(ddpm_folder):
    model = difftk.load(ddpm_folder)
    parts = spec(model)
    assert (parts["schedule"][0], parts["denoiser"][0], parts["sampler"][0]) == ("diffusers", "diffusers-unet", "ancestral")
    assert parts["sampler"][1]["variance"] == "beta_tilde" and parts["sampler"][1]["spacing"] == "leading"
    assert parts["sampler"][1]["clip_x0"] is None and "guidance" not in parts
    assert model.data_shape == (3, 8, 8) and model.num_classes == 0 and model.schedule.grid_size == 1000
    assert model.checkpoint.path == ddpm_folder and model.step == 0
    # the pipeline's spec builds the same pipeline again (the UNet's architecture is an option of diffusers-unet)
    again = difftk.pipeline.compose.compose_spec(model.pipeline.spec)
    assert again.denoiser.unet.config.block_out_channels == model.denoiser.unet.config.block_out_channels


@pytest.mark.parametrize("scheduler,sampler,options", [
    (DDIMScheduler(), "ddim", {"eta": 0.0, "clip_x0": 1.0, "spacing": "leading"}),  # diffusers' defaults clip x̂₀
    (DDIMScheduler(timestep_spacing="trailing", clip_sample_range=2.0), "ddim", {"spacing": "trailing", "clip_x0": 2.0}),
    (DDPMScheduler(variance_type="fixed_large", clip_sample=False), "ancestral", {"variance": "beta", "clip_x0": None}),
])
def test_the_scheduler_config_sets_the_default_sampler(scheduler, sampler, options, unet, save_pipeline):
    name, got = spec(difftk.load(save_pipeline(unet(), scheduler)))["sampler"]
    assert name == sampler and {k: got[k] for k in options} == options


def test_a_bare_unet_folder_reads_the_scheduler_beside_it_or_the_one_it_is_given(unet, tmp_path):
    net = unet()
    net.save_pretrained(tmp_path / "bare")
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    with pytest.raises(CheckpointError, match="UNet folder without a scheduler"):
        difftk.load(tmp_path / "bare")
    scheduler.save_config(tmp_path / "elsewhere")
    given = load_diffusers(tmp_path / "bare", scheduler=tmp_path / "elsewhere" / "scheduler_config.json")
    (tmp_path / "bare" / "difftk.json").write_text(json.dumps({"scheduler": "../elsewhere/scheduler_config.json"}))
    named = difftk.load(tmp_path / "bare")
    scheduler.save_config(tmp_path / "beside")
    net.save_pretrained(tmp_path / "beside")
    beside = difftk.load(tmp_path / "beside")
    for model in (given, named, beside):
        assert model.denoiser.prediction == "v"
        assert np.array_equal(model.schedule.discretize(1000).betas, scheduler.betas.double().numpy())
    x, t = torch.randn(1, 3, 8, 8), torch.full((1,), 0.5)
    with torch.inference_mode():
        out = beside.denoiser(x, t)
        assert torch.equal(out, beside.denoiser.unet(x, torch.tensor([499])).sample)  # t = 0.5 is step 499, exactly
        # the weights it read are net's; two copies of them need not round alike on the CPU (seen: 8e-7 apart
        # with diffusers' own from_pretrained), so the network is compared to rounding
        assert torch.allclose(out, net(x, torch.tensor([499])).sample, rtol=0, atol=1e-5)


def test_a_dataset_named_in_difftk_json_is_the_held_out_data(ddpm_folder, tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 60 * i, dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
    (ddpm_folder / "difftk.json").write_text(json.dumps(
        {"dataset": {"name": "image-folder", "options": {"path": "../images", "holdout": 0.5}}}))
    from difftk.evaluation.compare import held_out_data

    data, why = held_out_data(difftk.load(ddpm_folder).checkpoint.dataset)
    assert why is None and tuple(data.shape) == (3, 8, 8) and len(data) == 2


def broken(folder, where, change):
    """``folder`` with the JSON file ``where`` changed by ``change(dict)``."""
    path = folder / where
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize("where,change,message", [
    ("scheduler/scheduler_config.json", lambda d: d.update(_class_name="LMSDiscreteScheduler"),
     "scheduler class (_class_name) 'LMSDiscreteScheduler' is not supported (supported: DDPMScheduler, DDIMScheduler, "
     "EulerDiscreteScheduler"),
    ("scheduler/scheduler_config.json", lambda d: d.update(beta_schedule="laplace"),
     "beta_schedule 'laplace' is not supported (supported: linear, scaled_linear, squaredcos_cap_v2, sigmoid, or trained_betas)"),
    ("scheduler/scheduler_config.json", lambda d: d.update(prediction_type="flow_prediction"),
     "prediction_type 'flow_prediction' is not supported (supported: epsilon, v_prediction, sample)"),
    ("scheduler/scheduler_config.json", lambda d: d.update(variance_type="learned_range"),
     "variance_type 'learned_range' is not supported (supported: fixed_small, fixed_small_log, fixed_large)"),
    ("scheduler/scheduler_config.json", lambda d: d.update(thresholding=True), "thresholding true"),
    ("scheduler/scheduler_config.json", lambda d: d.update(trained_betas=[0.1, 0.2]),
     "trained_betas has 2 values but num_train_timesteps is 1000"),
    ("unet/config.json", lambda d: d.update(time_embedding_type="fourier"), "time_embedding_type 'fourier' is not supported"),
    ("unet/config.json", lambda d: d.update(_class_name="UNet2DConditionModel"), "not a UNet2DModel"),
    ("model_index.json", lambda d: d.update(_class_name="StableDiffusionPipeline"),
     "pipeline 'StableDiffusionPipeline' is not supported (supported: DDPMPipeline, DDIMPipeline"),
    ("difftk.json", lambda d: d.update(null_clas=True), "unknown setting 'null_clas' (settings: null_class, scheduler, dataset)"),
])
def test_what_cannot_be_read_is_one_line_naming_the_key_and_what_is_supported(where, change, message, ddpm_folder):
    (ddpm_folder / "difftk.json").write_text("{}")
    with pytest.raises(CheckpointError) as err:
        difftk.load(broken(ddpm_folder, where, change))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_missing_weight_file_is_named(ddpm_folder):
    (ddpm_folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"unet has no weight file \(diffusion_pytorch_model.safetensors or diffusion_pytorch_model.bin\)"):
        difftk.load(ddpm_folder)


def test_a_null_class_needs_class_embeddings(ddpm_folder):
    (ddpm_folder / "difftk.json").write_text(json.dumps({"null_class": True}))
    with pytest.raises(CheckpointError, match="null_class needs num_class_embeds ≥ 2"):
        difftk.load(ddpm_folder)


def test_what_no_plugin_claims_keeps_difftks_own_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="is a directory without a checkpoint.safetensors"):
        difftk.load(tmp_path / "empty")
    with pytest.raises(UnknownComponentError, match="no checkpoint file or shipped model 'mnist-cgf'"):
        difftk.load("mnist-cgf")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        difftk.load(tmp_path / "missing.safetensors")
