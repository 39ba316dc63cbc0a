"""Data: what a dataset's examples are (the Examples protocol), in memory (arrays) or as image
files decoded when read (indexed), read ahead by loader workers (loader); pictures of samples;
and a pipeline's denoiser sized to the data it trains on."""
