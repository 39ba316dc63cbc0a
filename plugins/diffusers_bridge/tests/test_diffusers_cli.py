"""The whole path on the command line: sample, evaluate and export diffusers models; errors as one line."""

import json

import difftk
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler
from difftk_cli.main import cli
from difftk_diffusers.config import read_scheduler_config
from PIL import Image

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, code=2):
    """The command failed with ``code`` and said why on exactly one stderr line, with no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def betas(model_or_schedule):
    schedule = getattr(model_or_schedule, "schedule", model_or_schedule)
    return np.asarray(schedule.discretize(schedule.grid_size).betas)


def test_sample_a_diffusers_folder_with_any_sampler(ddpm_folder, tmp_path):
    result = run("sample", ddpm_folder, "-n", 4, "-o", tmp_path / "x.png", "--sampler", "dpm-solver-2m", "--steps", 5)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "sampler dpm-solver-2m" in result.stdout and "5 steps" in result.stdout
    assert f"from the diffusers model {ddpm_folder}" in " ".join(result.stdout.split()) and "step 0" not in result.stdout
    assert Image.open(tmp_path / "x.png").size[0] > 8


def test_sample_a_class_conditional_folder_with_a_label_and_cfg(unet, save_pipeline, tmp_path):
    folder = save_pipeline(unet(classes=4), DDIMScheduler(clip_sample=False), settings={"null_class": True})
    result = run("sample", folder, "-n", 3, "-o", tmp_path / "c.png", "--steps", 4, "--label", 2)
    assert result.exit_code == 0, result.output
    assert "class 2; guidance scale=3.0" in result.stdout  # the pipeline's own guidance (cfg): ∅ is known
    result = run("sample", folder, "-n", 3, "-o", tmp_path / "c.png", "--steps", 4, "--label", 3)
    assert "--label 3 is out of range: the model has classes 0..2" in one_line_error(result)


def test_evaluate_a_diffusers_folder_against_held_out_images(ddpm_folder, tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
    result = run("evaluate", ddpm_folder, "--metric", "bpd-vlb", "-n", 2, "--set", "metric.steps=5",
                 "--set", "metric.variance=beta_tilde", "--data", f"image-folder:{tmp_path / 'images'}",
                 "--data-option", "holdout=0.5", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["results"][0]["metric"] == "bpd-vlb" and record["results"][0]["value"] > 0
    assert record["sampler"] == "ancestral"


def test_export_a_difftk_checkpoint_writes_its_schedule_and_says_the_weights_do_not_map(tmp_path):
    result = run("export", "mnist-cfg", "--format", "diffusers", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "weights not exported: denoiser 'unet-attn'" in result.stdout and "not a diffusers UNet2DModel" in result.stdout
    config = read_scheduler_config(tmp_path / "out" / "scheduler" / "scheduler_config.json")
    back = difftk.create("schedule", "diffusers", **config.schedule_options)
    assert np.max(np.abs(betas(back) - betas(difftk.load("mnist-cfg")))) <= 1e-12
    assert config.class_name == "DDIMScheduler" and not (tmp_path / "out" / "unet").exists()  # mnist-cfg samples with ddim


def test_export_a_diffusers_model_back_to_a_ddpm_pipeline(unet, save_pipeline, tmp_path):
    net = unet(classes=3)
    folder = save_pipeline(net, DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                              prediction_type="v_prediction"), settings={"null_class": True})
    result = run("export", folder, "--format", "diffusers", "-o", tmp_path / "back")
    assert result.exit_code == 0, result.output
    assert "beta_schedule scaled_linear (every β exact)" in result.stdout
    pipe = DDPMPipeline.from_pretrained(tmp_path / "back")
    assert all(torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(), net.state_dict().values(), strict=True))
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    again, first = difftk.load(tmp_path / "back"), difftk.load(folder)
    assert np.array_equal(betas(again), betas(first)) and again.num_classes == 2 == first.num_classes


@pytest.mark.parametrize("setup,args,message", [
    (lambda f: (f / "model_index.json").unlink() or (f / "unet" / "config.json").unlink() or f,
     (), "is not a diffusers model: it has no model_index.json, unet/config.json or config.json"),
    (lambda f: (f / "unet" / "diffusion_pytorch_model.safetensors").unlink() or f, (), "has no weight file"),
    (lambda f: _edit(f / "scheduler" / "scheduler_config.json", beta_schedule="cubic") or f, (),
     "beta_schedule 'cubic' is not supported (supported: linear, scaled_linear, squaredcos_cap_v2, sigmoid"),
    (lambda f: _edit(f / "scheduler" / "scheduler_config.json", prediction_type="score") or f, (),
     "prediction_type 'score' is not supported (supported: epsilon, v_prediction, sample)"),
    (lambda f: _edit(f / "scheduler" / "scheduler_config.json", _class_name="PNDMScheduler") or f, (),
     "'PNDMScheduler' is not supported (supported: DDPMScheduler, DDIMScheduler, EulerDiscreteScheduler"),
])
def test_errors_on_the_command_line_are_one_line(setup, args, message, ddpm_folder, tmp_path):
    folder = setup(ddpm_folder)
    assert message in one_line_error(run("sample", folder, "-n", 2, "-o", tmp_path / "x.png", *args))


def test_an_unknown_export_format_is_one_line(ddpm_folder, tmp_path):
    line = one_line_error(run("export", ddpm_folder, "--format", "onnx", "-o", tmp_path / "o"))
    assert "--format onnx: no installed plugin writes this format" in line
    line = one_line_error(run("export", "mnist-cfg", "--format", "diffusers", "-o", ddpm_folder / "model_index.json"))
    assert "model_index.json is a file: a folder of a model in another library's format is written to a folder" in line


def _edit(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
