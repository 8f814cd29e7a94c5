"""``python -m diffusion``: train, sample, score and store without Ray (see ``diffusion.cli.main``)."""
