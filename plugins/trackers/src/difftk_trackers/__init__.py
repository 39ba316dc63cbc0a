"""Experiment trackers for difftk training: loggers of the kind ``logger``, chosen with
``difftk train --log-to tensorboard,mlflow,wandb``."""
