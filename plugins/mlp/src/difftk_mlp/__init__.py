"""An MLP denoiser for vector data (the 2-D toys) as a difftk plugin."""

from difftk_mlp.model import MLPDenoiser, MLPDenoiserConfig

__all__ = ["MLPDenoiser", "MLPDenoiserConfig"]
