"""Sweeps: every trial of every model, the hyperparameters against FD, and learning curves."""

import pandas as pd
import streamlit as st

from dashboard import charts, lab_data
from dashboard.page_tools import or_stop, settings
from diffusion.lab.tables import TRIAL_HISTORY, TRIALS

st.title("Sweeps")
lab = settings().lab
trials = or_stop(lambda: lab_data.table(lab, TRIALS))
is_best = trials[TRIALS.is_best].fillna(False).astype(bool) if TRIALS.is_best in trials else pd.Series(False, index=trials.index)
trials.insert(0, "best", is_best.map(lambda best: "★" if best else ""))
left, right = st.columns(2)
models = sorted(trials[TRIALS.model].unique())
chosen_models = left.multiselect("Models", models, default=models)
statuses = sorted(trials[TRIALS.status].unique())
chosen_status = right.multiselect("Status", statuses, default=statuses)
shown = trials[trials[TRIALS.model].isin(chosen_models) & trials[TRIALS.status].isin(chosen_status)]
hyper = [c for c in trials.columns if c.startswith(TRIALS.prefixes)]
summary = ["best", TRIALS.model, TRIALS.trial_id, TRIALS.status, *hyper, TRIALS.best_fd, TRIALS.final_fd, TRIALS.final_loss,
           TRIALS.images_seen, TRIALS.time_total_s]
st.dataframe(shown[[c for c in summary if c in shown.columns]], hide_index=True, width="stretch")
st.caption(f"{len(shown)} of {len(trials)} trials; ★ marks each model's best trial (exported to the lab store).")

st.subheader("Hyperparameters and FD")
model = st.selectbox("Model", chosen_models or models)
of_model = trials[(trials[TRIALS.model] == model) & trials[TRIALS.best_fd].notna()]
varying = [c for c in hyper if c in of_model and of_model[c].nunique(dropna=True) > 1]
if len(of_model) < 2 or not varying:
    st.info(f"{model}: {len(of_model)} scored trial(s) and no hyperparameter that varies; nothing to compare.")
else:
    st.plotly_chart(charts.hyperparameter_coordinates(of_model, varying), width="stretch")

st.subheader("Learning curves")
try:
    history = lab_data.table(lab, TRIAL_HISTORY)
except lab_data.LabUnavailable as reason:
    st.info(str(reason))
    st.stop()
best_ids = trials[is_best][TRIALS.trial_id].tolist()
options = shown[TRIALS.trial_id].tolist()
selected = st.multiselect("Trials", options, default=[t for t in best_ids if t in options],
                          format_func=lambda t: f"{trials.set_index(TRIALS.trial_id)[TRIALS.model].get(t, '?')} {t}")
curves = history[history[TRIAL_HISTORY.trial_id].isin(selected)]
if curves.empty:
    st.info("Choose trials to see their curves.")
else:
    left, right = st.columns(2)
    left.plotly_chart(charts.learning_curves(curves, TRIAL_HISTORY.loss), width="stretch")
    right.plotly_chart(charts.learning_curves(curves, TRIAL_HISTORY.fd), width="stretch")
