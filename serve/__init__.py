"""The Ray Serve application that samples exported denoisers over HTTP; built on ``diffusion``."""
