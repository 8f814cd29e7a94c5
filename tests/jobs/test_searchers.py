"""The search algorithms of a Tune experiment: one searcher per group, trials per group, the suggestion order."""

from __future__ import annotations

import pytest
from ray import tune
from ray.tune.search import Searcher

from diffusion.core.config import ConfigError
from jobs.searchers import GroupedSearcher, check_search


def spaces() -> dict[str, dict]:
    return {
        "vae": {"name": "vae", "model": {"latent_dim": tune.grid_search([8, 16])}, "train": {"lr": tune.loguniform(1e-4, 1e-2),
                                                                                             "steps": 150}},
        "classifier": {"name": "classifier", "model": {}, "train": {"steps": 40}},
    }


def drain(searcher: GroupedSearcher) -> list[dict]:
    points = []
    while (point := searcher.suggest(f"t{len(points)}")) not in (None, Searcher.FINISHED):
        points.append(point["point"])
    return points


def test_random_search_walks_the_grid_per_sample_and_runs_a_fixed_group_once() -> None:
    searcher = GroupedSearcher("random", spaces(), num_samples=2, metric="val_loss", mode="min",
                               wrap=lambda group, point: {"point": point})
    assert searcher.trials_of == {"vae": 4, "classifier": 1} and searcher.trials == 5
    points = drain(searcher)
    # the group with the most trials to go first (ties: the experiment's order): the VAE's before the lone classifier
    assert [p["name"] for p in points] == ["vae", "vae", "vae", "vae", "classifier"]
    vae = [p for p in points if p["name"] == "vae"]
    assert sorted(p["model"]["latent_dim"] for p in vae) == [8, 8, 16, 16]
    assert len({p["train"]["lr"] for p in vae}) == 4 and all(1e-4 <= p["train"]["lr"] < 1e-2 for p in vae)
    assert all(p["train"]["steps"] == 150 for p in vae)  # constants kept beside the drawn values
    assert points[4] == {"name": "classifier", "model": {}, "train": {"steps": 40}}


def test_groups_with_equal_counts_take_turns() -> None:
    space = {model: {"name": model, "train": {"lr": tune.uniform(0.1, 0.2)}} for model in ("mlp", "cnn", "unet")}
    searcher = GroupedSearcher("random", space, num_samples=2, metric="fd", mode="min",
                               wrap=lambda group, point: {"point": point})
    assert [p["name"] for p in drain(searcher)] == ["mlp", "cnn", "unet", "mlp", "cnn", "unet"]


def test_optuna_gets_one_study_per_group_and_learns_only_from_its_results(tmp_path) -> None:
    space = {"mlp": {"name": "mlp", "train": {"lr": tune.loguniform(1e-4, 1e-2), "steps": 20}},
             "unet": {"name": "unet", "diffusion": {"schedule": tune.choice(["linear", "cosine"])}}}
    searcher = GroupedSearcher("optuna", space, num_samples=3, metric="fd", mode="min",
                               wrap=lambda group, point: {"point": point})
    assert searcher.trials == 6
    first = searcher.suggest("a")["point"]
    assert first["name"] == "mlp" and first["train"]["steps"] == 20 and 1e-4 <= first["train"]["lr"] <= 1e-2
    searcher.on_trial_result("a", {"loss": 0.3, "training_iteration": 1})  # no FD in this report: not passed on
    searcher.on_trial_complete("a", {"fd": 12.5, "training_iteration": 2})
    studies = {group: s._ot_study for group, s in searcher.searchers.items()}
    assert studies["mlp"] is not studies["unet"]
    assert [t.value for t in studies["mlp"].trials] == [12.5] and not studies["unet"].trials
    second = searcher.suggest("b")["point"]
    assert second["name"] == "unet" and second["diffusion"]["schedule"] in ("linear", "cosine")
    path = str(tmp_path / "searcher.pkl")  # Tune saves the searcher with the experiment, and --resume restores it
    searcher.save(path)
    restored = GroupedSearcher("optuna", space, num_samples=3, metric="fd", mode="min",
                               wrap=lambda group, point: {"point": point})
    restored.restore(path)
    assert restored.suggested == {"mlp": 1, "unet": 1} and len(restored.searchers["mlp"]._ot_study.trials) == 1


def test_a_grid_needs_random_search_and_an_unknown_or_missing_searcher_is_refused() -> None:
    with pytest.raises(ConfigError, match="model.latent_dim: 'grid' works with search: random only"):
        GroupedSearcher("optuna", spaces(), num_samples=1, metric="val_loss", mode="min", wrap=lambda g, p: p)
    with pytest.raises(ConfigError, match="unknown search algorithm 'grid'; accepted: random, "):
        check_search("grid")
    with pytest.raises(ConfigError, match="run: pip install hpbandster ConfigSpace"):
        check_search("bohb")
