"""Columns only through the table schemas (docs/architecture.md, "Result tables"): no module that writes or reads a
result table names a declared column by a string literal; it names it through its schema (``SCORES.ratio``).

A literal counts as naming a column where code reads or builds a row with it: a subscript (``frame["ratio"]``),
``.get("ratio")``, a dict display's key, a pandas call's first argument (``groupby``, ``sort_values``, ...) or its
``columns=``/``subset=``/``on=``/``by=``/``index=``/``values=`` keyword. Names that are also config fields (``steps``,
``seed``, ``precision``) are config keys there, and a model card's own keys (``CARD_KEYS``) are the card's, not a
table's.
"""

import ast
import dataclasses
from pathlib import Path

import pytest

from diffusion.core import config
from diffusion.core.samplers import SamplerSetting
from diffusion.lab.tables import TABLES

ROOT = Path(__file__).resolve().parents[1]
TABLE_MODULES = (
    "diffusion/metrics/robustness.py", "diffusion/metrics/model_scores.py", "diffusion/metrics/card_summary.py",
    "diffusion/lab/leaderboard.py", "diffusion/embeddings/training.py", "diffusion/cli/measure.py",
    "jobs/experiment.py", "jobs/sweep.py", "jobs/kinds.py", "jobs/trial.py", "jobs/console.py",
    "jobs/trial_schedulers.py", "jobs/evaluate.py", "jobs/model_tasks.py",
    "dashboard/lab_data.py", "dashboard/charts.py",
    *(f"dashboard/views/{page}.py" for page in ("leaderboard", "samples", "paths", "sweeps", "robustness")),
    "bench/yardstick.py", "bench/plot_robustness.py",
)
"""The modules that write or read result tables (or the trial reports that become their rows)."""
CONFIGS = (config.RunConfig, config.VAERun, config.ClassifierRun, config.DenoiserConfig, config.DiffusionConfig,
           config.TrainConfig, config.DataConfig, config.VAEConfig, config.ClassifierConfig, SamplerSetting)
CARD_KEYS = {"trial_id", "steps", "images_seen", "trained_steps", "train_seconds", "planned_steps", "train_cpus",
             "trial_status", "final_loss", "images_per_s", "parameters"}
"""A model card's own keys (``card.json``'s metrics: how far the weights trained), which some columns share."""
COLUMNS = ({str(c) for table in TABLES.values() for c in table.columns}
           - {f.name for cls in CONFIGS for f in dataclasses.fields(cls)} - CARD_KEYS)
PANDAS_CALLS = {"get", "groupby", "sort_values", "set_index", "drop_duplicates", "dropna", "pivot", "pivot_table",
                "merge", "join", "agg"}
PANDAS_KEYWORDS = {"columns", "subset", "on", "by", "index", "values"}


def _strings(node: ast.AST) -> list[ast.Constant]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node]
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [s for element in node.elts for s in _strings(element)]
    return []


def column_literals(path: Path) -> list[str]:
    """``line: 'name'`` of every literal in ``path`` that names a declared column where it reads or builds a row."""
    found: list[ast.Constant] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Subscript):
            found += _strings(node.slice)
        elif isinstance(node, ast.Dict):
            found += [s for key in node.keys if key is not None for s in _strings(key)]
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr in PANDAS_CALLS and node.args:
                found += _strings(node.args[0])
            found += [s for keyword in node.keywords if keyword.arg in PANDAS_KEYWORDS for s in _strings(keyword.value)]
    return [f"{s.lineno}: {s.value!r}" for s in found if s.value in COLUMNS]


@pytest.mark.parametrize("module", TABLE_MODULES)
def test_table_code_names_columns_through_their_schemas(module: str) -> None:
    assert column_literals(ROOT / module) == [], f"{module} names columns by literals; use the table's schema"


def test_the_rule_finds_a_column_named_by_a_literal(tmp_path: Path) -> None:
    source = tmp_path / "reader.py"
    source.write_text('best = frame.sort_values("ratio")["floor_mean"]\nrow = {"monotonicity": 1.0, "steps": 20}\n')
    assert sorted(column_literals(source)) == ["1: 'floor_mean'", "1: 'ratio'", "2: 'monotonicity'"]
