"""Training: the loop (``train``), its sampler and ``pisr-ros train``."""
