"""Metric robustness: FD against corruption severity per embedding, and which embedding to trust.

Only curves measured in the embeddings the lab holds now are shown; curves of an older one are named, with the
command that draws them again.
"""

import streamlit as st

from dashboard import charts, lab_data
from dashboard.page_tools import or_stop, settings
from diffusion.lab.leaderboard import ranked_by, split_lineage
from diffusion.lab.tables import ROBUSTNESS, ROBUSTNESS_SUMMARY

st.title("Metric robustness")
lab = settings().lab
all_curves = or_stop(lambda: lab_data.table(lab, ROBUSTNESS))
all_summaries = or_stop(lambda: lab_data.table(lab, ROBUSTNESS_SUMMARY))
lineage = or_stop(lambda: lab_data.lineage(lab))
curve, _ = split_lineage(all_curves, lineage)
summary, stale = split_lineage(all_summaries, lineage)
if not stale.empty:
    old = sorted(set(stale[ROBUSTNESS_SUMMARY.embedding]))
    st.warning(f"Not shown: the curves of {', '.join(old)}, measured in other weights than the lab holds now "
               f"({'; '.join(ranked_by(lineage, e) for e in old)}). Draw them again with:")
    st.code(f"python -m diffusion robustness --lab {lab}", language="bash")
if summary.empty:
    st.info("No robustness curve was measured in the embeddings the lab holds now.")
    st.stop()
st.markdown("Each corruption damages real digits at rising severity. A metric to trust rises **monotonically** "
            "with the damage, leaves its floor **early**, and keeps a **wide range** (FD / floor at full damage).")
SUMMARY = ROBUSTNESS_SUMMARY
per_embedding = summary.groupby(SUMMARY.embedding).agg(
    monotone_everywhere=(SUMMARY.monotonicity, lambda m: bool((m >= 0.99).all())),
    worst_monotonicity=(SUMMARY.monotonicity, "min"), mean_detection=(SUMMARY.detection_threshold, "mean"),
    smallest_range=(SUMMARY.max_ratio, "min")).reset_index()
ranked = per_embedding.sort_values(["monotone_everywhere", "smallest_range"], ascending=[False, False])
trusted = ranked.iloc[0]
st.success(f"**{trusted[SUMMARY.embedding]}**: monotone for every corruption: {'yes' if trusted.monotone_everywhere else 'no'}; "
           f"at full severity at least {trusted.smallest_range:.0f}x its floor.")
st.dataframe(ranked, hide_index=True, width="stretch")
corruption = st.radio("Corruption", sorted(curve[ROBUSTNESS.corruption].unique()), horizontal=True)
normalise = st.toggle("Divide by each embedding's floor", value=True)
st.plotly_chart(charts.robustness_curves(curve, corruption, normalise), width="stretch")
st.dataframe(summary[summary[SUMMARY.corruption] == corruption], hide_index=True, width="stretch")
