"""Entry point of the trackers plugin: registers the ``tensorboard``, ``mlflow`` and ``wandb`` loggers."""

import difftk

from difftk_trackers.mlflow_store import MLflowLogger
from difftk_trackers.tensorboard_events import TensorBoardLogger
from difftk_trackers.wandb_offline import WandbLogger


@difftk.hookimpl
def difftk_register_components(register):
    register.add_logger("tensorboard", TensorBoardLogger)
    register.add_logger("mlflow", MLflowLogger)
    register.add_logger("wandb", WandbLogger)
