"""The dashboard's plotly figures, built from the lab store's tables (pure functions: data in, figure out)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from diffusion.lab.leaderboard import RANK
from diffusion.lab.tables import ROBUSTNESS, SCORES, TRIAL_HISTORY, TRIALS

BEST = "#d62728"
OTHER = "#7f7f7f"
EMBEDDING_COLOURS = {"vae": "#1f77b4", "classifier": "#ff7f0e", "pixels": "#2ca02c"}


def leaderboard_bars(board: pd.DataFrame, embedding: str) -> go.Figure:
    """FD per model (the best, and those tied with it, in red) with the ratio's 95% interval as error bars (in FD units:
    the interval times the floor), the floor drawn as a line and its spread as a band."""
    colours = [BEST if rank == 1 else OTHER for rank in board[RANK]]
    text = [f"{ratio:.2f}x floor" for ratio in board[SCORES.ratio]]
    fd = board[SCORES.fd]
    error_y = None
    if SCORES.ratio_low in board.columns and board[SCORES.ratio_low].notna().all():
        error_y = {"type": "data", "symmetric": False, "color": "black",
                   "array": (board[SCORES.ratio_high] * board[SCORES.floor_mean] - fd).tolist(),
                   "arrayminus": (fd - board[SCORES.ratio_low] * board[SCORES.floor_mean]).tolist()}
    figure = go.Figure(go.Bar(x=board[SCORES.model], y=fd, marker_color=colours, text=text, textposition="outside",
                              error_y=error_y, name="FD", hovertemplate="%{x}: FD %{y:.4g}<extra></extra>"))
    floor, spread = float(board[SCORES.floor_mean].iloc[0]), float(board[SCORES.floor_std].iloc[0])
    figure.add_hrect(y0=max(floor - spread, 0), y1=floor + spread, fillcolor="black", opacity=0.08, line_width=0)
    figure.add_hline(y=floor, line_dash="dash", line_color="black",
                     annotation_text=f"real-vs-real floor {floor:.3g} (N = {int(board[SCORES.n].iloc[0])})", annotation_position="top left")
    figure.update_layout(yaxis_title=f"FD ({embedding} embedding)", xaxis_title="model", showlegend=False,
                         yaxis_type="log" if fd.max() / max(fd.min(), 1e-12) > 30 else "linear",
                         margin={"t": 30})
    return figure


def hyperparameter_coordinates(trials: pd.DataFrame, columns: list[str], score: str = TRIALS.best_fd) -> go.Figure:
    """Parallel coordinates of the swept hyperparameters, coloured by the trial's best ``score`` (best_fd, best_val_loss)."""
    dimensions = []
    for column in columns:
        values = trials[column]
        if pd.api.types.is_numeric_dtype(values):
            dimensions.append({"label": column, "values": values.astype(float)})
        else:
            codes, labels = pd.factorize(values.astype(str))
            dimensions.append({"label": column, "values": codes, "tickvals": list(range(len(labels))),
                               "ticktext": list(labels)})
    best = trials[score].astype(float)
    label = score.replace("_", " ")
    dimensions.append({"label": label, "values": best})
    return go.Figure(go.Parcoords(line={"color": best, "colorscale": "Viridis_r", "showscale": True,
                                        "colorbar": {"title": label}}, dimensions=dimensions))


def learning_curves(history: pd.DataFrame, metric: str, group: str = TRIAL_HISTORY.model) -> go.Figure:
    """``metric`` (loss, fd, val_loss) against training images, one line per trial, named by its ``group`` (model or kind)."""
    figure = go.Figure()
    for trial_id, reports in history.groupby(TRIAL_HISTORY.trial_id, sort=False):
        points = reports.dropna(subset=[metric]).sort_values(TRIAL_HISTORY.images_seen)
        label = f"{points[group].iloc[0]} {trial_id}" if len(points) else str(trial_id)
        figure.add_trace(go.Scatter(x=points[TRIAL_HISTORY.images_seen], y=points[metric], mode="lines+markers", name=label))
    figure.update_layout(xaxis_title="training images", yaxis_title=metric, yaxis_type="log", margin={"t": 30})
    return figure


def robustness_curves(curve: pd.DataFrame, corruption: str, normalise: bool) -> go.Figure:
    """FD (or FD / floor) against severity, one line per embedding with a band of +-1 std over seeds."""
    figure = go.Figure()
    value = ROBUSTNESS.ratio if normalise else ROBUSTNESS.fd
    rows = curve[curve[ROBUSTNESS.corruption] == corruption]
    for embedding, group in rows.groupby(ROBUSTNESS.embedding, sort=False):
        levels = group.groupby(ROBUSTNESS.severity)[value].agg(["mean", "std"]).fillna(0.0).sort_index()
        colour = EMBEDDING_COLOURS.get(str(embedding), OTHER)
        upper, lower = levels["mean"] + levels["std"], (levels["mean"] - levels["std"]).clip(lower=1e-12)
        figure.add_trace(go.Scatter(x=list(levels.index) + list(levels.index[::-1]),
                                    y=list(upper) + list(lower[::-1]), fill="toself", fillcolor=colour,
                                    opacity=0.2, line={"width": 0}, hoverinfo="skip", showlegend=False))
        figure.add_trace(go.Scatter(x=levels.index, y=levels["mean"], mode="lines+markers", name=str(embedding),
                                    line={"color": colour}))
    figure.update_layout(xaxis_title="severity", yaxis_title="FD / floor" if normalise else "FD", yaxis_type="log",
                         margin={"t": 30}, legend_title="embedding")
    return figure
