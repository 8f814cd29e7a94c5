"""Helpers for a local Ray head, its auth token and deployment manifests; built on ``diffusion``."""
