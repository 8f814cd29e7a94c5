"""Result tables: the declared schemas are checked on write and read, and the table store keeps every writer's rows."""

from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest
import torch

from diffusion.embeddings import pixel_embedder
from diffusion.lab.store import DamagedFile, LabStore, LabStoreError
from diffusion.lab.table_log import TableOp, op_to_bytes
from diffusion.lab.tables import (
    ROBUSTNESS,
    ROBUSTNESS_SUMMARY,
    SCORES,
    TABLES,
    TRIAL_HISTORY,
    TRIALS,
    Column,
    TableSchema,
    TableSchemaError,
    TableStore,
)
from diffusion.metrics.model_scores import ScoreRow
from diffusion.metrics.robustness import robustness_curve, robustness_summary
from tests.diffusion.lab.small_tables import LEADERBOARD, SCORES_FD, TRIALS_ID

VALUES = {"string": ["a", "b"], "integer": [1, 2], "float": [0.5, 1.5], "bool": [True, False], "any": [1, "x"]}


@pytest.fixture()
def store(tmp_path) -> LabStore:
    return LabStore(tmp_path / "lab")


@pytest.fixture()
def tables(store: LabStore) -> TableStore:
    return TableStore(store)


def sample(schema: TableSchema, **overrides: list) -> pd.DataFrame:
    """Two rows of every declared column (keys "a" and "b"), and one config column where the table takes them."""
    columns = {str(c): VALUES[c.kind] for c in schema.columns}
    columns |= {f"{prefix}value": [4, 8] for prefix in schema.prefixes[:1]}
    return pd.DataFrame(columns | overrides)


def test_tables_round_trip_through_parquet(tables: TableStore) -> None:
    table = pd.DataFrame({"model": ["mlp", "unet"], "fd": [3.5, 1.25]})
    tables.write(LEADERBOARD, table)
    pd.testing.assert_frame_equal(tables.read(LEADERBOARD), table)
    assert tables.names() == ["leaderboard"]


def test_a_damaged_table_names_the_file_and_the_job_that_rewrites_it(store: LabStore, tables: TableStore) -> None:
    tables.update(SCORES_FD, pd.DataFrame({"model": ["a", "b"], "fd": [1.0, 2.0]}))
    path = Path(store.path("tables/scores.parquet"))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(LabStoreError, match=r"tables/scores.parquet is damaged \(.*\); rerun python -m jobs.evaluate to rewrite it"):
        tables.read(SCORES_FD)
    # the job that rewrites it can: the damaged file is set aside, not a second crash
    tables.update(SCORES_FD, pd.DataFrame({"model": ["c"], "fd": [3.0]}))
    assert tables.read(SCORES_FD).model.tolist() == ["c"]
    kept, aside = sorted(p.name for p in path.parent.iterdir())
    assert kept == "scores.parquet" and aside.startswith("scores.parquet.damaged-")
    assert tables.names() == ["scores"]


def test_update_table_replaces_the_rows_of_its_models_and_keeps_the_others(tables: TableStore) -> None:
    tables.update(SCORES_FD, pd.DataFrame({"model": ["a", "a", "b"], "fd": [1.0, 1.5, 2.0]}))
    tables.update(SCORES_FD, pd.DataFrame({"model": ["b", "c"], "fd": [2.5, 3.0]}))
    assert tables.read(SCORES_FD).sort_values("fd").to_dict("list") == {"model": ["a", "a", "b", "c"], "fd": [1.0, 1.5, 2.5, 3.0]}
    tables.update(SCORES_FD, pd.DataFrame(), keys=["a"])  # named keys without rows: their rows go
    assert sorted(tables.read(SCORES_FD).model) == ["b", "c"]
    with pytest.raises(ValueError, match="no 'model' column"):
        tables.update(SCORES_FD, pd.DataFrame({"fd": [1.0]}))


def test_update_table_with_named_keys_replaces_them_as_the_sweep_does(tables: TableStore) -> None:
    tables.update(TRIALS_ID, pd.DataFrame({"model": ["mlp", "unet", "cnn"], "trial_id": ["a", "b", "c"]}))
    tables.update(TRIALS_ID, pd.DataFrame({"model": ["mlp"], "trial_id": ["d"]}), keys=["mlp", "unet"])
    assert tables.read(TRIALS_ID).sort_values("trial_id").trial_id.tolist() == ["c", "d"]
    with pytest.raises(ValueError, match="outside keys"):
        tables.update(TRIALS_ID, pd.DataFrame({"model": ["cnn"], "trial_id": ["e"]}), keys=["mlp"])
    with pytest.raises(ValueError, match="no 'model' column"):
        tables.update(TRIALS_ID, pd.DataFrame({"trial_id": ["e"]}), keys=["mlp"])


def test_a_frame_missing_a_column_is_refused_naming_the_table_the_column_and_the_accepted_ones(tables: TableStore) -> None:
    with pytest.raises(TableSchemaError, match=r"table 'scores' does not match its schema: missing columns \['ratio'\]") as raised:
        tables.update(SCORES, sample(SCORES).drop(columns=[SCORES.ratio]))
    assert "Accepted columns: model (string), arch (string)" in str(raised.value)
    assert "images_seen (integer, nullable)" in str(raised.value)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, LabStoreError)
    assert SCORES.name not in tables.names()  # nothing was written


def test_an_undeclared_column_is_refused(tables: TableStore) -> None:
    with pytest.raises(TableSchemaError, match=r"table 'robustness_summary' .*undeclared columns \['colour'\]"):
        tables.write(ROBUSTNESS_SUMMARY, sample(ROBUSTNESS_SUMMARY, colour=["red", "blue"]))
    with pytest.raises(TableSchemaError, match=r"undeclared columns \['optimiser.lr'\]"):  # not a config section
        tables.update(TRIALS, sample(TRIALS, **{"optimiser.lr": [0.1, 0.2]}))
    tables.update(TRIALS, sample(TRIALS, **{"train.lr": [0.1, 0.2], "model.channels": [(1, 2), (2, 4)]}))


def test_a_wrong_dtype_or_a_missing_value_is_refused(tables: TableStore) -> None:
    with pytest.raises(TableSchemaError, match=r"column 'steps' holds string values .*declared integer"):
        tables.update(SCORES, sample(SCORES, steps=["20", "50"]))
    with pytest.raises(TableSchemaError, match=r"column 'fd' holds string values .*declared float"):
        tables.write(ROBUSTNESS, sample(ROBUSTNESS, fd=["1.0", "2.0"]))
    with pytest.raises(TableSchemaError, match=r"column 'is_best' holds integer values .*declared bool"):
        tables.update(TRIALS, sample(TRIALS, is_best=[1, 0]))
    with pytest.raises(TableSchemaError, match=r"column 'weights_sha256' has missing values \(declared string, not nullable\)"):
        tables.update(SCORES, sample(SCORES, weights_sha256=["abc", None]))


def test_missing_values_are_accepted_where_the_writers_leave_them(tables: TableStore) -> None:
    # a card without train_seconds / images_seen; a trial without a scored report, checkpoint or node
    tables.update(SCORES, sample(SCORES, train_seconds=[None, None], images_seen=[1000, None], kid_mean=[None, 0.1]))
    trials = sample(TRIALS, best_fd=[None, None], best_step=[None, 40], checkpoint=[None, "s3://x"], node_id=[None, None],
                    is_best=[True, None]).drop(columns=[TRIALS.is_best])
    tables.update(TRIALS, trials)
    history = sample(TRIAL_HISTORY, fd=[None, 2.0], ratio=[None, 3.0]).drop(columns=[TRIAL_HISTORY.timestamp])
    tables.update(TRIAL_HISTORY, history)
    tables.update(TRIAL_HISTORY, pd.DataFrame(), keys=["a"])  # a sweep without reports removes its models' rows
    assert tables.read(SCORES)[SCORES.images_seen].isna().tolist() == [False, True]
    assert tables.read(TRIAL_HISTORY)[TRIAL_HISTORY.model].tolist() == ["b"]


@pytest.mark.parametrize("schema", list(TABLES.values()), ids=list(TABLES))
def test_every_schema_round_trips_through_a_local_store(tables: TableStore, schema: TableSchema) -> None:
    frame = sample(schema)
    tables.write(schema, frame)
    pd.testing.assert_frame_equal(tables.read(schema), frame, check_dtype=False)
    if schema.key is not None:
        tables.update(schema, frame.iloc[[1]].assign(**{schema.key: "c"}))
        assert sorted(tables.read(schema)[schema.key]) == ["a", "b", "c"]
    else:
        with pytest.raises(TableSchemaError, match="no key column: it is written whole"):
            tables.update(schema, frame)
    assert tables.names() == [schema.name]


def test_a_foreign_table_is_refused_on_read_naming_the_file_and_the_job(store: LabStore, tables: TableStore) -> None:
    store.write_bytes("tables/scores.parquet", op_to_bytes(TableOp(pd.DataFrame({"model": ["a"], "score": [1.0]}))))
    with pytest.raises(DamagedFile, match=r"tables/scores.parquet is not a scores table as this code writes it "
                                          r"\(missing columns .*undeclared columns \['score'\].*\); rerun python -m jobs.evaluate"):
        tables.read(SCORES)


def test_readers_names_are_the_columns() -> None:
    for schema in TABLES.values():
        for column in schema.columns:
            assert getattr(schema, column) is column and column == str(column)
        assert schema.key is None or schema.key in schema.columns
    assert (SCORES.ratio, TRIALS.model, ROBUSTNESS.severity) == ("ratio", "model", "severity")
    assert pd.DataFrame({SCORES.ratio: [1.0]})["ratio"].tolist() == [1.0]
    with pytest.raises(AttributeError, match="table 'scores' has no column 'ratios'"):
        _ = SCORES.ratios
    with pytest.raises(ValueError, match="kind 'text' is not one of"):
        Column("name", "text")  # type: ignore[arg-type]


def test_the_writers_build_exactly_the_declared_columns() -> None:
    assert sorted(f.name for f in fields(ScoreRow)) == sorted(SCORES.columns)  # the order is the writer's
    real = torch.rand(40, 1, 28, 28) * 2 - 1
    curve = robustness_curve(real[:20], real[20:], [pixel_embedder()], real, n=20, severities=(0.0, 0.5, 1.0),
                             corruptions=("gaussian_noise",), seeds=(0, 1))
    assert list(curve.columns) == list(ROBUSTNESS.columns) and not ROBUSTNESS.problems(curve)
    summary = robustness_summary(curve)
    assert list(summary.columns) == list(ROBUSTNESS_SUMMARY.columns) and not ROBUSTNESS_SUMMARY.problems(summary)
