"""difftk → diffusers: the scheduler of the sampler the user chose, read back by diffusers and by difftk."""

import json

import difftk
import diffusers
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from difftk.errors import IncompatibleError
from difftk.pipeline.compose import spec_of
from difftk_cli.main import cli
from difftk_diffusers.config import SCHEDULERS, read_scheduler_config
from difftk_diffusers.export import EXPORTABLE, sampler_config
from diffusers import DDPMPipeline, DPMSolverMultistepScheduler

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


SAMPLERS = [("ancestral", {"variance": "beta", "spacing": "leading"}), ("ddim", {"spacing": "trailing"}),
            ("ddim", {"eta": 1.0}), ("ddim", {"spacing": "karras"}), ("heun", {"spacing": "linspace", "sigma_max": None}),
            ("dpm-solver-2m", {"spacing": "trailing", "lower_order_final": False}),
            ("dpm-solver-3m", {"spacing": "karras", "third_order": "reference", "lower_order_final": False}),
            ("dpm-solver-2m-sde", {"spacing": "trailing", "lower_order_final": False}),
            ("unipc", {"order": 3, "variant": "bh1", "spacing": "trailing"})]


@pytest.mark.parametrize("name,options", SAMPLERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SAMPLERS)])
def test_a_sampler_written_as_a_scheduler_config_reads_back_as_itself(name, options, tmp_path):
    """sampler → (diffusers class, keys) → scheduler_config.json → sampler: the same name and options, exactly
    (a ddim at η = 1 comes back as itself through EulerAncestralDiscreteScheduler, a karras ddim through Euler)."""
    sampler = difftk.create("sampler", name, **options)
    class_name, keys, notes = sampler_config(spec_of("sampler", sampler))
    assert not notes, notes  # each of these steps in diffusers exactly as in difftk
    getattr(diffusers, class_name)(**keys).save_config(tmp_path)
    back = read_scheduler_config(tmp_path / "scheduler_config.json").sampler
    again = difftk.create("sampler", back["name"], **back["options"])
    assert spec_of("sampler", again) == spec_of("sampler", sampler)


def test_every_mapped_class_is_exported_by_some_sampler():
    classes = {sampler_config(spec_of("sampler", difftk.create("sampler", n, **o)))[0] for n, o in SAMPLERS}
    # a singlestep order 1 is DDIM, written as such; a flow-matching model's schedule is continuous, which
    # --format diffusers does not write (its β are the schedule it exports)
    assert classes == set(SCHEDULERS) - {"DPMSolverSinglestepScheduler", "FlowMatchEulerDiscreteScheduler"}
    assert set(EXPORTABLE) == {n for n, _ in SAMPLERS}


@pytest.mark.parametrize("name", ["edm", "flow-euler", "respaced", "euler-maruyama", "pc", "ode"])
def test_a_sampler_without_a_diffusers_scheduler_is_one_line(name):
    with pytest.raises(IncompatibleError, match=f"sampler '{name}' has no diffusers scheduler \\(exportable: ancestral"):
        sampler_config(spec_of("sampler", difftk.create("sampler", name)))


def test_export_dpm_solver_then_diffusers_own_pipeline_samples_as_difftk(ddpm_folder, tmp_path):
    """The round trip of issue 35: export with --sampler dpm-solver-2m, DDPMPipeline.from_pretrained loads a
    DPMSolverMultistepScheduler, and its own __call__ gives difftk's samples from the same x_T."""
    out = tmp_path / "dpm"
    result = run("export", ddpm_folder, "--format", "diffusers", "--sampler", "dpm-solver-2m", "--set",
                 "sampler.spacing=trailing", "--set", "sampler.lower_order_final=false", "-o", out)
    assert result.exit_code == 0, result.output
    assert "DPMSolverMultistepScheduler for sampler dpm-solver-2m" in " ".join(result.stdout.split())
    pipe = DDPMPipeline.from_pretrained(out)
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler) and pipe.scheduler.config.timestep_spacing == "trailing"
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=8, output_type="np").images
    model = difftk.load(out)
    assert model.pipeline.spec["sampler"].name == "dpm-solver-2m"
    x_T = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        x0 = model.pipeline.sampler.sample(model.denoiser, model.schedule, x_T, steps=8)
    ours = (x0 / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert np.abs(ours - images).max() <= 1e-5


def test_export_says_what_differs_and_refuses_what_has_no_scheduler(ddpm_folder, tmp_path):
    # unipc's default grid on this linear schedule is logsnr, which diffusers has not: one line, and the fix
    result = run("export", ddpm_folder, "--format", "diffusers", "--sampler", "unipc", "-o", tmp_path / "u")
    assert result.exit_code == 2 and "walks the logsnr grid on this schedule" in result.stderr
    assert "--set sampler.spacing=trailing" in result.stderr and not (tmp_path / "u").exists()
    result = run("export", ddpm_folder, "--format", "diffusers", "--sampler", "unipc", "--set", "sampler.spacing=trailing",
                 "-o", tmp_path / "u")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert "UniPCMultistepScheduler for sampler unipc" in said and "trailing and karras are the same in both" not in said
    config = json.loads((tmp_path / "u" / "scheduler" / "scheduler_config.json").read_text())
    assert config["_class_name"] == "UniPCMultistepScheduler" and config["timestep_spacing"] == "trailing"
    result = run("export", ddpm_folder, "--format", "diffusers", "--sampler", "edm", "-o", tmp_path / "e")
    assert result.exit_code == 2 and "sampler 'edm' has no diffusers scheduler" in result.stderr
    assert not (tmp_path / "e").exists()
    result = run("export", ddpm_folder, "--format", "folder", "--sampler", "ddim", "-o", tmp_path / "x")
    assert result.exit_code == 2 and "--sampler and --set choose the sampler of --format difftk or diffusers" in result.stderr


def test_without_sampler_the_pipelines_own_is_written(tmp_path):
    """mnist-cfg samples with ddim (η = 0): its export is a DDIMScheduler config that reads back as that ddim."""
    result = run("export", "mnist-cfg", "--format", "diffusers", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    config = read_scheduler_config(tmp_path / "out" / "scheduler" / "scheduler_config.json")
    own = difftk.load("mnist-cfg").pipeline.spec["sampler"]
    assert own.name == "ddim" and config.class_name == "DDIMScheduler"
    assert config.sampler["name"] == "ddim" and config.sampler["options"]["eta"] == own.options_dict["eta"]
