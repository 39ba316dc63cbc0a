"""Where and how computation runs: the device, precision and memory format, several processes
(DDP), and files written atomically."""
