"""Leaderboard: the FD ranking of the models against the real-vs-real floor, per embedding and sampler setting.

Only scores measured in the embedding the lab holds now are ranked; models scored in an older one
are named, with the command that re-scores them. Each ratio shows its 95% interval; models whose
intervals overlap share a rank. Beside FD: precision, recall, density and coverage, with their
real-vs-real values at the same N. The budget line names the rule the models trained under; the
budget-matched column gives FD / floor at a training budget every model reached (from the
sweep's reports).
"""

import pandas as pd
import streamlit as st

from dashboard import charts, lab_data
from dashboard.page_tools import or_stop, settings
from diffusion.lab.leaderboard import (
    BUDGET_HIGH,
    BUDGET_LOW,
    BUDGET_RATIO,
    MANIFOLD,
    RANK,
    REAL_MANIFOLD,
    budget_rule,
    leaderboard,
    manifold_reference,
    ranked_by,
    rescore_command,
    split_lineage,
    stale_models,
    with_budget,
)
from diffusion.lab.tables import SCORES, TRIAL_HISTORY

st.title("Leaderboard")
lab = settings().lab
scores = or_stop(lambda: lab_data.table(lab, SCORES))
lineage = or_stop(lambda: lab_data.lineage(lab))
left, right = st.columns(2)
embeddings = [e for e in ("vae", "classifier", "pixels") if e in set(scores[SCORES.embedding])]
embedding = left.radio("Embedding", embeddings, horizontal=True,
                       help="vae: the lab's yardstick (see Metric robustness); the others are cross-checks")
st.caption(f"Ranked in the {embedding} embedding the lab holds now: **{ranked_by(lineage, embedding)}**. Only scores "
           f"measured in these weights compare.")
stale = stale_models(scores, lineage, embedding)
if stale:
    st.warning(f"Not ranked: {', '.join(stale)}. Their {embedding} scores were measured in an older {embedding} "
               f"embedding than the lab's current one, so they do not compare. Re-score them with:")
    st.code(rescore_command(lab, stale), language="bash")
current, _ = split_lineage(scores, lineage)
settings_scored = current[[SCORES.sampler, SCORES.steps, SCORES.n]].drop_duplicates() \
    .sort_values([SCORES.n, SCORES.sampler, SCORES.steps], ascending=[False, True, True])
labels = ["best setting at the largest N"] + [f"{r[SCORES.sampler]}, {r[SCORES.steps]} steps (N = {r[SCORES.n]})"
                                              for r in settings_scored.to_dict("records")]
choice = right.selectbox("Sampler and steps", range(len(labels)), format_func=lambda i: labels[i])
setting = {} if choice == 0 else {"sampler": settings_scored.iloc[choice - 1][SCORES.sampler],
                                   "steps": int(settings_scored.iloc[choice - 1][SCORES.steps])}
board = leaderboard(scores, lineage, embedding, **setting)
if board.empty:
    st.info(f"No model was scored in the lab's current {embedding} embedding with this setting.")
    st.stop()
try:
    board, budget = with_budget(board, lab_data.table(lab, TRIAL_HISTORY))
except lab_data.LabUnavailable:  # models exported by other means than a sweep have no reports
    budget = None
best = board.iloc[0]
tied = board[board[RANK] == 1][SCORES.model].tolist()
interval = f" (95% interval {best[SCORES.ratio_low]:.2f} to {best[SCORES.ratio_high]:.2f})" \
    if pd.notna(best.get(SCORES.ratio_low)) else ""
st.markdown(f"**Best: `{best[SCORES.model]}`**, FD {best[SCORES.fd]:.4g} = **{best[SCORES.ratio]:.2f}x** the real-vs-real "
            f"floor{interval} ({best[SCORES.floor_mean]:.3g} ± {best[SCORES.floor_std]:.2g} at N = {int(best[SCORES.n])}), "
            f"{best[SCORES.sampler]} with {int(best[SCORES.steps])} steps."
            + (f" **Tied with {', '.join(f'`{m}`' for m in tied[1:])}**: their intervals overlap." if len(tied) > 1 else ""))
st.markdown(f"**Budget:** {budget_rule(board)}.")
reference = manifold_reference(board)
if reference:
    st.caption("Precision and recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020), k = 5 nearest "
               f"neighbours in the {embedding} embedding; {reference}. Low precision or coverage says the samples lie off "
               "the digits' manifold, whatever FD says.")
st.plotly_chart(charts.leaderboard_bars(board, embedding), width="stretch")
shown = board.assign(train_minutes=board[SCORES.train_seconds] / 60, ms_per_image=board[SCORES.seconds_per_image] * 1000)
budget_help = (f"FD / floor in the sweep's reports at {budget.images:,} training images, the largest budget every model "
               f"reached: an equal-budget comparison (the sweep scores fewer samples with a shorter sampler, so compare "
               f"this column within itself)") if budget else ""
shown = shown.drop(columns=[SCORES.train_seconds, SCORES.seconds_per_image])
first = [RANK, SCORES.model, SCORES.ratio, SCORES.ratio_low, SCORES.ratio_high, *MANIFOLD, BUDGET_RATIO, BUDGET_LOW,
         BUDGET_HIGH]
order = [c for c in first if c in shown.columns] + [c for c in shown.columns if c not in first + REAL_MANIFOLD]
st.dataframe(shown, hide_index=True, width="stretch", column_order=order,
             column_config={SCORES.ratio: st.column_config.NumberColumn("FD / floor", format="%.2f"),
                            SCORES.ratio_low: st.column_config.NumberColumn("95% low", format="%.2f"),
                            SCORES.ratio_high: st.column_config.NumberColumn("95% high", format="%.2f"),
                            BUDGET_RATIO: st.column_config.NumberColumn(budget.label if budget else "at equal budget",
                                                                        format="%.2f", help=budget_help),
                            BUDGET_LOW: st.column_config.NumberColumn("95% low (budget)", format="%.2f"),
                            BUDGET_HIGH: st.column_config.NumberColumn("95% high (budget)", format="%.2f"),
                            RANK: st.column_config.NumberColumn("rank", help="models whose intervals overlap share a rank"),
                            SCORES.parameters: st.column_config.NumberColumn(format="%d"),
                            SCORES.images_seen: st.column_config.NumberColumn("training images", format="%d"),
                            **{figure: st.column_config.NumberColumn(figure, format="%.3f",
                                                                     help="real vs real at this N: see above")
                               for figure in MANIFOLD}})
