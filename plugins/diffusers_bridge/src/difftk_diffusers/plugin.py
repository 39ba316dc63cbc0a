"""Entry point of the diffusers bridge: its components, and the load and export hooks.

Importing this module does not import diffusers; reading or writing a model does.
"""

import difftk

from difftk_diffusers.denoiser import DiffusersUNet
from difftk_diffusers.schedule import DiffusersSchedule


@difftk.hookimpl
def difftk_register_components(register):
    register.add_schedule("diffusers", DiffusersSchedule)
    register.add_denoiser("diffusers-unet", DiffusersUNet)


@difftk.hookimpl
def difftk_load_model(source, device):
    """A diffusers model folder as a Model; ``None`` for anything that does not look like one."""
    from difftk_diffusers.folder import is_diffusers_folder, load

    return load(source, device) if is_diffusers_folder(source) else None


@difftk.hookimpl
def difftk_export(model, format, output):
    """``--format diffusers``: a DDPMPipeline folder (or its scheduler config alone)."""
    if format != "diffusers":
        return None
    from difftk_diffusers.export import export_diffusers

    return export_diffusers(model, output)
