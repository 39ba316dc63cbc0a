"""TensorBoard: the run as event files that ``tensorboard --logdir RUN/tensorboard`` shows.

Written with ``torch.utils.tensorboard.SummaryWriter`` (which needs the ``tensorboard``
package): scalars ``loss``, ``lr``, ``grad_norm`` and ``metric/NAME``, the sample grids as the
image ``samples``, and the configuration as the text ``config``. A resumed run purges the
events after the step it resumes from, as the log.jsonl of the run drops them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from difftk.options import option
from PIL import Image

from difftk_trackers.records import folder, require, scalars


class TensorBoardLogger:
    """TensorBoard event files: scalars, sample grids and the configuration (SummaryWriter)."""

    @attrs.frozen
    class Config:
        dir: str | None = option(None, help="folder of the event files; none = RUN/tensorboard", optional=True)

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        require("tensorboard", "tensorboard", "tensorboard", "tensorboard")
        self.writer: Any = None

    def start(self, run: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder(self.config.dir, run.directory, "tensorboard")),
                                    purge_step=run.step or None)
        text = json.dumps(run.config, indent=2, sort_keys=True, default=str)
        self.writer.add_text("config", "    " + text.replace("\n", "\n    "), global_step=run.step)  # markdown code block

    def log(self, record: Mapping[str, Any]) -> None:
        for key, value in scalars(record).items():
            self.writer.add_scalar(key, value, global_step=record["step"], walltime=record.get("time"))

    def image(self, path: Path, step: int) -> None:
        with Image.open(path) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        self.writer.add_image("samples", pixels, global_step=step, dataformats="HWC")

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.close()
