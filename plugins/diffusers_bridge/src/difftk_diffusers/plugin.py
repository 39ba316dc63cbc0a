"""Entry point of the diffusers bridge: its components, and the load and export hooks.

Importing this module does not import diffusers; reading or writing a diffusers model does.
"""

from pathlib import Path

import difftk
from difftk.errors import CheckpointError

from difftk_diffusers.autoencoder import DiffusersAutoencoder
from difftk_diffusers.denoiser import DiffusersUNet
from difftk_diffusers.schedule import DiffusersSchedule


@difftk.hookimpl
def difftk_register_components(register):
    register.add_schedule("diffusers", DiffusersSchedule)
    register.add_denoiser("diffusers-unet", DiffusersUNet)
    register.add_autoencoder("diffusers-vae", DiffusersAutoencoder)


@difftk.hookimpl
def difftk_load_model(source, device):
    """A difftk model folder or a diffusers model folder as a Model; a Hub id (``owner/name``) that is no local
    path is one line saying to download it first; ``None`` for anything else."""
    from difftk_diffusers.folder import is_diffusers_folder, load
    from difftk_diffusers.model_folder import hub_hint, is_model_folder, load_folder

    hint = hub_hint(source)
    if hint is not None:
        raise CheckpointError(hint)
    if is_diffusers_folder(source) and is_model_folder(Path(source)):
        return load_folder(Path(source), device)
    return load(source, device) if is_diffusers_folder(source) else None


@difftk.hookimpl
def difftk_export(model, format, output):
    """``--format diffusers``: a DDPMPipeline folder (or its scheduler config alone); ``--format folder``: difftk's
    own Hub-style folder (config.json, model.safetensors, pipeline.toml)."""
    if format == "folder":
        from difftk_diffusers.model_folder import export_folder

        return export_folder(model, output)
    if format != "diffusers":
        return None
    from difftk_diffusers.export import export_diffusers

    return export_diffusers(model, output)
