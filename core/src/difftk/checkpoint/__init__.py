"""The checkpoint file: safetensors with named tensors and string metadata, never pickle, written
atomically, and read as untrusted input."""
