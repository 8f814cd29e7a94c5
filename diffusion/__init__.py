"""Diffusion Lab's library: data, schedules, denoisers, training, samplers, checkpoints, lab store.

Depends on torch, numpy, scipy, pandas and pyarrow only; never on Ray, Streamlit or FastAPI.
"""

__version__ = "0.1.0"
