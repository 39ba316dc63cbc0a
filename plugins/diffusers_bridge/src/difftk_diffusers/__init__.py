"""The diffusers bridge for difftk: a diffusers DDPM/DDIM model folder as a difftk Model, and back.

``difftk.load(FOLDER)`` (and so ``difftk sample``, ``evaluate``, ``compare``) reads a folder
written by ``save_pretrained`` of a ``DDPMPipeline`` or ``DDIMPipeline``, or a bare
``UNet2DModel`` folder with a ``scheduler_config.json`` beside its ``config.json``;
``difftk export CHECKPOINT --format diffusers -o DIR`` writes the other way. diffusers itself
is imported only when a model is read or written, never when difftk starts.
"""

from difftk_diffusers.config import SchedulerConfig, read_scheduler_config, scheduler_times
from difftk_diffusers.folder import load

__all__ = ["SchedulerConfig", "load", "read_scheduler_config", "scheduler_times"]
