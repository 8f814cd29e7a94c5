"""Every dashboard page through Streamlit's AppTest, against a lab store the smoke pipeline wrote, and an empty one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from diffusion.lab.store import LabStore
from diffusion.lab.tables import EMBEDDING_TRIALS, TRIALS, TableStore
from tests.lineage_lab import NEW_TRIAL, RESCORED, STALE, RetrainedLab
from tests.servers import ROOT, free_port, serve_app

pytestmark = pytest.mark.slow  # starts the smoke pipeline on moto S3 and Serve

APP = str(ROOT / "dashboard" / "app.py")
PAGES = ["leaderboard", "samples", "paths", "sweeps", "robustness", "live", "jobs"]


def open_page(page: str, lab: Path | str, monkeypatch: pytest.MonkeyPatch, **env: str) -> AppTest:
    monkeypatch.setenv("DIFFUSION_LAB", str(lab))
    monkeypatch.setenv("DIFFUSION_SERVE_URL", env.get("serve", f"http://127.0.0.1:{free_port()}"))
    monkeypatch.setenv("DIFFUSION_RAY_ADDRESS", env.get("ray", f"http://127.0.0.1:{free_port()}"))
    app = AppTest.from_file(APP, default_timeout=120).run()
    app.switch_page(f"views/{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def figures(app: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def test_leaderboard_ranks_five_models_against_the_floor(smoke_lab: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_page("leaderboard", smoke_lab, monkeypatch)
    board = app.dataframe[0].value
    ranks = board["rank"].tolist()
    assert len(board) == 5 and ranks[0] == 1 and ranks == sorted(ranks)  # models whose intervals overlap share a rank
    assert ((board.ratio_low <= board.ratio) & (board.ratio <= board.ratio_high)).all()
    assert board.budget_ratio.notna().all()  # every model at the budget they all reached (1,280 images in smoke)
    assert ((board.budget_ratio_low <= board.budget_ratio) & (board.budget_ratio <= board.budget_ratio_high)).all()
    [figure] = figures(app)
    assert len(figure["data"][0]["x"]) == 5 and figure["data"][0]["marker"]["color"].count("#d62728") == ranks.count(1)
    assert len(figure["data"][0]["error_y"]["array"]) == 5  # the intervals as error bars
    assert any(shape.get("line", {}).get("dash") == "dash" for shape in figure["layout"]["shapes"])  # the floor
    assert "real-vs-real floor" in app.markdown[0].value
    assert app.markdown[1].value.startswith("**Budget:** ")  # the rule, read from the images each model's weights saw
    assert "1,280" in app.markdown[1].value  # the smoke preset's 20 steps of 64 (a weight from an earlier report: fewer)
    for figure in ("precision", "recall", "coverage"):  # beside FD, with the real-vs-real reference in the caption
        assert board[figure].between(0, 1).all(), board[figure]
    assert (board.density >= 0).all() and any("real vs real at N = 64" in c.value for c in app.main.caption)
    assert "vae@" in app.main.caption[0].value and not app.main.warning  # the VAE it ranks by; nothing stale

    app.radio[0].set_value("pixels").run()
    assert not app.exception and len(app.dataframe[0].value) == 5
    app.selectbox[0].set_value(2).run()  # one sampler setting: ddpm over all T steps, N = 32
    assert not app.exception and set(app.dataframe[0].value.n) == {32}


def test_samples_show_grids_side_by_side(smoke_lab: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_page("samples", smoke_lab, monkeypatch)
    assert len(app.get("image")) == 2
    app.multiselect[0].set_value(["mlp", "cnn", "unet"]).run()
    assert len(app.get("image")) == 3 and [s.value for s in app.subheader] == ["mlp", "cnn", "unet"]
    about = [c.value for c in app.main.caption]  # what each grid is: how far it trained, and its score
    assert len(about) == 3 and all("trained 20 steps of 64 (1,280 images)" in a and "FD / floor" in a for a in about)
    assert all("precision" in a and "CPU-minutes" in a for a in about), about


def test_paths_slider_moves_along_the_chain(smoke_lab: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_page("paths", smoke_lab, monkeypatch)
    assert len(app.get("image")) == 2  # x_t, predicted x_0 and the finished sample per chain; the animation
    assert "trained 20 steps of 64" in app.caption[0].value  # what the model is, above its chains
    first = app.caption[1].value
    app.slider[0].set_value(app.slider[0].max).run()
    assert not app.exception and app.caption[1].value != first and "t = 0" in app.caption[1].value


def test_sweeps_list_every_trial_and_draw_their_curves(smoke_lab: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = TableStore(LabStore(smoke_lab))
    trials, embedding_trials = tables.read(TRIALS), tables.read(EMBEDDING_TRIALS)
    app = open_page("sweeps", smoke_lab, monkeypatch)
    table, embedding_table = app.dataframe[0].value, app.dataframe[1].value
    assert len(table) == len(trials) == 5 and (table.best == "★").sum() == 5
    assert (table.ended == "completed at step 20 of 20").all() and (table.steps_reached == 20).all()  # steps reached
    # the embeddings' sweep beside it: the smoke preset's VAE grid (2 trials) and one classifier, each kind's choice starred
    assert len(embedding_table) == len(embedding_trials) == 3 and (embedding_table.best == "★").sum() == 2
    chosen = embedding_table[embedding_table.best == "★"]
    assert sorted(chosen.kind) == ["classifier", "vae"]
    vae_trials = embedding_table[embedding_table.kind == "vae"]
    assert chosen[chosen.kind == "vae"].best_val_loss.item() == vae_trials.best_val_loss.min()
    curves = figures(app)
    # denoisers: loss and FD, one line per best trial; embeddings: loss and validation loss, one line per chosen one
    assert [len(figure["data"]) for figure in curves] == [5, 5, 2, 2]
    assert curves[3]["layout"]["yaxis"]["title"]["text"] == "val_loss"
    app.multiselect[0].set_value(["unet"]).run()
    assert len(app.dataframe[0].value) == 1


def test_robustness_names_the_embedding_to_trust_and_draws_bands(smoke_lab: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_page("robustness", smoke_lab, monkeypatch)
    assert len(app.success) == 1 and len(app.dataframe[0].value) == 3
    [figure] = figures(app)
    assert len(figure["data"]) == 6  # a band and a line per embedding
    app.radio[0].set_value("invasion").run()
    assert not app.exception and set(app.dataframe[1].value.corruption) == {"invasion"}


def test_scores_and_curves_from_a_re_trained_vae_are_named_and_never_ranked(retrained_vae_lab: RetrainedLab,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    lab, new_vae = retrained_vae_lab.root, retrained_vae_lab.new_vae
    app = open_page("leaderboard", lab, monkeypatch)
    assert app.dataframe[0].value.model.tolist() == [RESCORED]
    assert f"vae@{new_vae.sha256[:12]}, trial {NEW_TRIAL}" in app.main.caption[0].value
    assert f"Not ranked: {STALE}." in app.main.warning[0].value
    assert app.main.code[0].value == f"python -m jobs.evaluate --lab {lab} --models {STALE}"
    app = open_page("robustness", lab, monkeypatch)  # drawn in the old VAE: only the pixels curves are current
    assert "the curves of vae" in app.main.warning[0].value and f"--lab {lab}" in app.main.code[0].value
    assert set(app.dataframe[0].value.embedding) == {"pixels"}


@pytest.fixture(scope="module")
def serve_url(smoke_lab: str) -> Iterator[str]:
    with serve_app(smoke_lab) as base:
        yield base


def test_live_sampling_shows_the_served_images(smoke_lab: str, serve_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_page("live", smoke_lab, monkeypatch, serve=serve_url)
    assert "5 model(s) loaded" in app.caption[0].value
    app.number_input[0].set_value(10)
    app.button[0].click().run()
    assert not app.exception and len(app.get("image")) == 1


def test_live_and_jobs_say_how_to_start_what_is_not_running(smoke_lab: str, monkeypatch: pytest.MonkeyPatch) -> None:
    live = open_page("live", smoke_lab, monkeypatch)
    assert "No Serve app answers" in live.warning[0].value and "python -m serve" in live.code[0].value
    jobs = open_page("jobs", smoke_lab, monkeypatch)
    assert "No Ray job API answers" in jobs.warning[0].value and "cluster.local up" in jobs.code[0].value


@pytest.mark.parametrize("page", PAGES)
def test_an_empty_lab_store_gives_a_message_on_every_page(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_page(page, tmp_path / "empty", monkeypatch)
    said = [element.value for element in (*app.info, *app.warning)]
    assert said, f"{page} says nothing about the empty store"
