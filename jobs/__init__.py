"""Ray Tune sweeps and evaluation jobs (``python -m jobs.<name>``); built on ``diffusion``."""
