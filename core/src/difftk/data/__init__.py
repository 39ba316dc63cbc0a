"""Data: examples as arrays (images or points), pictures of samples, and fitting a pipeline's
denoiser to the data it trains on."""
