"""Sweeps: every trial of the denoisers' sweep and of the embeddings' sweep, hyperparameters against the score, curves."""

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from dashboard import charts, lab_data
from dashboard.page_tools import settings
from diffusion.lab.tables import EMBEDDING_HISTORY, EMBEDDING_TRIALS, TRIAL_HISTORY, TRIALS, TableSchema


@dataclass(frozen=True)
class SweepView:
    """One Tune experiment's tables and what its trials are scored by (lower is better)."""

    trials: TableSchema
    history: TableSchema
    group: str
    score: str
    """The trials table's best-score column (best_fd, best_val_loss)."""
    curve: str
    """The history's score column (fd, val_loss)."""
    chosen: str


DENOISERS = SweepView(TRIALS, TRIAL_HISTORY, TRIALS.model, TRIALS.best_fd, TRIAL_HISTORY.fd,
                      "★ marks each model's chosen trial: the lowest FD (its best report's weights are exported, or its last report's "
                      "where the preset's sweep says export: last).")
EMBEDDINGS = SweepView(EMBEDDING_TRIALS, EMBEDDING_HISTORY, EMBEDDING_TRIALS.kind, EMBEDDING_TRIALS.best_val_loss,
                       EMBEDDING_HISTORY.val_loss,
                       "★ marks the embedding chosen for each kind: the lowest validation loss (VAE: held-out -ELBO, "
                       "nats per image; classifier: cross-entropy), on digits held out of the training split, never "
                       "the test digits every FD is measured against.")


STEPS_REACHED, PLANNED_STEPS = TRIALS.steps_reached, TRIALS.planned_steps


def ended_at(trials: pd.DataFrame) -> pd.Series:
    """Each trial's status with the step it reached of those it planned: ``stopped by ASHA at step 250 of 1,500``
    (the status alone in tables written before the steps were recorded)."""
    if STEPS_REACHED not in trials.columns:
        return trials[TRIALS.status]

    def line(row: pd.Series) -> str:
        reached, planned = row[STEPS_REACHED], row.get(PLANNED_STEPS)
        if pd.isna(reached):
            return str(row[TRIALS.status])
        return f"{row[TRIALS.status]} at step {int(reached):,}" + (f" of {int(planned):,}" if pd.notna(planned) else "")

    return trials.apply(line, axis=1) if len(trials) else trials[TRIALS.status]


def show_sweep(view: SweepView, lab: str, key: str) -> None:
    """The trials table (★ the chosen one per group), hyperparameters against the score, and learning curves."""
    try:
        trials = lab_data.table(lab, view.trials)
    except lab_data.LabUnavailable as reason:
        st.info(str(reason))
        return
    best_column = view.trials.is_best
    is_best = trials[best_column].fillna(False).astype(bool) if best_column in trials else pd.Series(False, index=trials.index)
    trials.insert(0, "best", is_best.map(lambda best: "★" if best else ""))
    left, right = st.columns(2)
    groups = sorted(trials[view.group].unique())
    chosen_groups = left.multiselect(view.group.capitalize() + "s", groups, default=groups, key=f"{key}-groups")
    statuses = sorted(trials[view.trials.status].unique())
    chosen_status = right.multiselect("Status", statuses, default=statuses, key=f"{key}-status")
    shown = trials[trials[view.group].isin(chosen_groups) & trials[view.trials.status].isin(chosen_status)]
    hyper = [c for c in trials.columns if c.startswith(view.trials.prefixes)]
    extra = [c for c in (TRIALS.final_fd, EMBEDDING_TRIALS.final_val_loss, EMBEDDING_TRIALS.val_neg_elbo,
                         EMBEDDING_TRIALS.val_accuracy) if c in trials.columns]
    shown = shown.assign(ended=ended_at(shown))
    summary = ["best", view.group, view.trials.trial_id, "ended", STEPS_REACHED, PLANNED_STEPS, *hyper, view.score,
               *extra, view.trials.final_loss, view.trials.images_seen, view.trials.time_total_s]
    st.dataframe(shown[[c for c in summary if c in shown.columns]], hide_index=True, width="stretch",
                 column_config={"ended": st.column_config.TextColumn(
                     "status", help="completed its planned steps, stopped early by ASHA (within its model) or by the "
                                    "budget-matched rung, or failed; at the step it reached"),
                     STEPS_REACHED: st.column_config.NumberColumn("steps reached", format="%d"),
                     PLANNED_STEPS: st.column_config.NumberColumn("planned steps", format="%d")})
    st.caption(f"{len(shown)} of {len(trials)} trials; {view.chosen}")

    st.subheader("Hyperparameters and score")
    group = st.selectbox(view.group.capitalize(), chosen_groups or groups, key=f"{key}-group")
    of_group = trials[(trials[view.group] == group) & trials[view.score].notna()]
    varying = [c for c in hyper if c in of_group and of_group[c].nunique(dropna=True) > 1]
    if len(of_group) < 2 or not varying:
        st.info(f"{group}: {len(of_group)} scored trial(s) and no hyperparameter that varies; nothing to compare.")
    else:
        st.plotly_chart(charts.hyperparameter_coordinates(of_group, varying, view.score), width="stretch",
                        key=f"{key}-coordinates")

    st.subheader("Learning curves")
    try:
        history = lab_data.table(lab, view.history)
    except lab_data.LabUnavailable as reason:
        st.info(str(reason))
        return
    best_ids = trials[is_best][view.trials.trial_id].tolist()
    options = shown[view.trials.trial_id].tolist()
    groups_of = trials.set_index(view.trials.trial_id)[view.group]
    selected = st.multiselect("Trials", options, default=[t for t in best_ids if t in options], key=f"{key}-trials",
                              format_func=lambda t: f"{groups_of.get(t, '?')} {t}")
    curves = history[history[view.history.trial_id].isin(selected)]
    if curves.empty:
        st.info("Choose trials to see their curves.")
        return
    left, right = st.columns(2)
    left.plotly_chart(charts.learning_curves(curves, view.history.loss, view.group), width="stretch", key=f"{key}-loss")
    right.plotly_chart(charts.learning_curves(curves, view.curve, view.group), width="stretch", key=f"{key}-score")


st.title("Sweeps")
lab = settings().lab
denoisers, embeddings = st.tabs(["Denoisers (scored by FD)", "Embeddings (chosen on validation loss)"])
with denoisers:
    show_sweep(DENOISERS, lab, "denoisers")
with embeddings:
    show_sweep(EMBEDDINGS, lab, "embeddings")
