"""The leaderboard ranks by FD / floor at one N: a ratio at a small N is pulled towards 1 and must not win."""

from __future__ import annotations

import pandas as pd

from diffusion.lab.leaderboard import format_leaderboard, leaderboard


def score(model: str, sampler: str, steps: int, n: int, fd: float, floor: float, embedding: str = "vae") -> dict:
    return {"model": model, "sampler": sampler, "steps": steps, "n": n, "embedding": embedding, "fd": fd,
            "floor_mean": floor, "floor_std": floor / 10, "ratio": fd / floor, "parameters": 1000,
            "train_seconds": 60.0, "seconds_per_image": 0.01}


SCORES = pd.DataFrame([
    score("a", "ddim", 20, 1000, 0.60, 0.15),   # 4.0x
    score("a", "ddim", 50, 1000, 0.75, 0.15),   # 5.0x
    score("a", "ddpm", 100, 200, 1.00, 0.50),   # 2.0x, but at N = 200: not comparable
    score("b", "ddim", 20, 1000, 0.45, 0.15),   # 3.0x
    score("b", "ddim", 50, 1000, 0.30, 0.15),   # 2.0x
    score("b", "ddpm", 100, 200, 1.50, 0.50),   # 3.0x
    score("b", "ddim", 20, 1000, 0.01, 0.15, embedding="pixels"),
])


def test_each_model_appears_once_with_its_best_ratio_at_the_largest_n() -> None:
    board = leaderboard(SCORES)
    assert board.model.tolist() == ["b", "a"] and board["rank"].tolist() == [1, 2]
    assert board.ratio.tolist() == [2.0, 4.0] and (board.n == 1000).all()
    assert board.steps.tolist() == [50, 20]


def test_a_sampler_setting_and_an_embedding_can_be_chosen() -> None:
    board = leaderboard(SCORES, sampler="ddim", steps=20)
    assert board.model.tolist() == ["b", "a"] and board.fd.tolist() == [0.45, 0.60]
    assert leaderboard(SCORES, sampler="ddpm").model.tolist() == ["a", "b"]
    assert leaderboard(SCORES, embedding="pixels").model.tolist() == ["b"]
    assert leaderboard(SCORES, embedding="classifier").empty
    assert "train_min" in format_leaderboard(leaderboard(SCORES))
    assert format_leaderboard(leaderboard(SCORES, embedding="classifier")) == "(no scored models)"
