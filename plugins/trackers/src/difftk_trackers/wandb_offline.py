"""Weights & Biases: the run in offline mode, as files under ``RUN/wandb`` that ``wandb sync``
uploads later; nothing goes over the network.

Written with ``wandb.init(mode="offline")``: the configuration as the run's config, the scalars
of every record at their step, and the sample grids as the image ``samples``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from difftk.options import option

from difftk_trackers.records import folder, require, scalars


class WandbLogger:
    """Weights & Biases, offline: config, metrics and sample grids in RUN/wandb (wandb sync uploads them)."""

    @attrs.frozen
    class Config:
        project: str = option("difftk", help="the W&B project of the run")
        mode: str = option("offline", help="offline (files only, wandb sync uploads them) or online",
                           choices=("offline", "online"))
        dir: str | None = option(None, help="the folder wandb/ is made in; none = the run directory", optional=True)

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        require("wandb", "wandb", "wandb", "wandb")
        self.run: Any = None

    def start(self, run: Any) -> None:
        import wandb

        where = folder(self.config.dir, run.directory, "")
        where.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")
        name = run.directory.name if run.directory is not None else None
        self.run = wandb.init(project=self.config.project, mode=self.config.mode, dir=str(where), name=name,
                              config=dict(run.config), settings=wandb.Settings(console="off"), reinit="create_new")

    def log(self, record: Mapping[str, Any]) -> None:
        self.run.log(scalars(record), step=record["step"])

    def image(self, path: Path, step: int) -> None:
        import wandb

        self.run.log({"samples": wandb.Image(str(path))}, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
