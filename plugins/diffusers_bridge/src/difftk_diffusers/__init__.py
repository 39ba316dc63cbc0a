"""The diffusers bridge for difftk: a diffusers UNet model folder as a difftk Model, and back.

``difftk.load(FOLDER)`` (and so ``difftk sample``, ``evaluate``, ``compare``) reads a folder
written by ``save_pretrained`` of a ``DDPMPipeline`` or ``DDIMPipeline``, or a bare
``UNet2DModel`` folder with a ``scheduler_config.json`` beside its ``config.json``, its scheduler
(DDPM, DDIM, Euler, Euler ancestral, Heun, DPM-Solver++, UniPC, FlowMatchEuler) becoming the
difftk sampler that steps as it does; ``difftk export CHECKPOINT --format diffusers -o DIR``
writes the other way, and ``--format folder`` writes difftk's own Hub-style folder. diffusers
itself is imported only when a diffusers model is read or written, never when difftk starts.
"""

from difftk_diffusers.config import SchedulerConfig, read_scheduler_config, scheduler_times
from difftk_diffusers.folder import load

__all__ = ["SchedulerConfig", "load", "read_scheduler_config", "scheduler_times"]
