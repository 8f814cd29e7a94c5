"""The Streamlit dashboard that reads the lab store; built on ``diffusion``."""
