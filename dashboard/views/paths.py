"""Denoising paths: a model's 5 chains, x_t and the predicted x_0 at a chosen step, and the animation."""

import streamlit as st
import torch

from dashboard import lab_data
from dashboard.page_tools import or_stop, settings
from diffusion.core.images import grid_png

st.title("Denoising paths")
lab = settings().lab
models = or_stop(lambda: lab_data.ranked_denoisers(lab))
name = st.selectbox("Model", models, help="in leaderboard order")
st.caption(lab_data.about(lab, name))
paths = or_stop(lambda: lab_data.denoising_paths(lab, name))
if paths is None:
    st.info(f"{name} has no stored denoising paths yet: python -m jobs.evaluate --lab {lab} --models {name}")
    st.stop()
snapshots = len(paths.levels)
index = st.slider("Step", 0, snapshots - 1, snapshots // 2, help="0 is pure noise; the last snapshot is the final step")
st.caption(f"snapshot {index + 1} of {snapshots}: noise level t = {paths.levels[index]} (of the schedule's 0..T-1)")
rows = torch.stack([paths.x_t[:, index], paths.x0[:, index], paths.final], dim=1).flatten(0, 1)
st.image(grid_png(rows, columns=3, scale=3),
         caption="one row per chain: x_t (the chain's input at this step), the x_0 predicted there, the finished sample")
animation = lab_data.model_file(lab, name, "paths.gif")
if animation is not None:
    st.subheader("Animation")
    st.image(animation, caption=f"{name}: the 5 chains from noise to digits")
