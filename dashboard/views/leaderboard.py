"""Leaderboard: the FD ranking of the models against the real-vs-real floor, per embedding and sampler setting."""

import streamlit as st

from dashboard import charts, lab_data
from dashboard.page_tools import or_stop, settings
from diffusion.lab.leaderboard import leaderboard

st.title("Leaderboard")
lab = settings().lab
scores = or_stop(lambda: lab_data.table(lab, "scores"))
left, right = st.columns(2)
embeddings = [e for e in ("vae", "classifier", "pixels") if e in set(scores.embedding)]
embedding = left.radio("Embedding", embeddings, horizontal=True,
                       help="vae: the lab's yardstick (see Metric robustness); the others are cross-checks")
settings_scored = scores[["sampler", "steps", "n"]].drop_duplicates().sort_values(["n", "sampler", "steps"], ascending=[False, True, True])
labels = ["best setting at the largest N"] + [f"{r.sampler}, {r.steps} steps (N = {r.n})" for r in settings_scored.itertuples()]
choice = right.selectbox("Sampler and steps", range(len(labels)), format_func=lambda i: labels[i])
if choice == 0:
    board = leaderboard(scores, embedding)
else:
    row = settings_scored.iloc[choice - 1]
    board = leaderboard(scores, embedding, row.sampler, int(row.steps))
if board.empty:
    st.info(f"No model was scored in the {embedding} embedding with this setting.")
    st.stop()
best = board.iloc[0]
st.markdown(f"**Best: `{best.model}`**, FD {best.fd:.4g} = **{best.ratio:.2f}x** the real-vs-real floor "
            f"({best.floor_mean:.3g} ± {best.floor_std:.2g} at N = {int(best.n)}), {best.sampler} with {int(best.steps)} steps.")
st.plotly_chart(charts.leaderboard_bars(board, embedding), width="stretch")
shown = board.assign(train_minutes=board.train_seconds / 60, ms_per_image=board.seconds_per_image * 1000)
st.dataframe(shown.drop(columns=["train_seconds", "seconds_per_image"]), hide_index=True, width="stretch",
             column_config={"ratio": st.column_config.NumberColumn("FD / floor", format="%.2f"),
                            "parameters": st.column_config.NumberColumn(format="%d")})
