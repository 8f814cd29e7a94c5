"""Samples: the 50-image grid of each model, several models side by side, each with how far it trained and its score."""

import streamlit as st

from dashboard import lab_data
from dashboard.page_tools import or_stop, settings

st.title("Samples")
lab = settings().lab
order = or_stop(lambda: lab_data.ranked_denoisers(lab))
ranks = lab_data.leaderboard_ranks(lab)
chosen = st.multiselect("Models", order, default=order[: min(2, len(order))])
if not chosen:
    st.info("Choose one or more models.")
    st.stop()
for column, name in zip(st.columns(len(chosen)), chosen):
    grid = lab_data.model_file(lab, name, "grid.png")
    with column:
        st.subheader(name)
        if grid is None:
            st.info(f"{name} has no grid yet: python -m jobs.evaluate --lab {lab} --models {name}")
        else:
            rank = f"rank {ranks[name]} on the leaderboard" if name in ranks else "not ranked"
            st.image(grid, caption=f"{name}: 50 samples ({rank})", width="stretch")
            st.caption(lab_data.about(lab, name))
