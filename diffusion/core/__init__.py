"""The math of diffusion models: configs, noise schedules, samplers, losses, denoisers, the training loop, EMA, devices."""
