"""The table registry (`soundctm.experiments.tables`) and the thin scripts over it: every id loads an
`Experiment` whose name is its module's and its result file's; reproduce/ scripts import the installed package
(no sys.path edits) and run from any folder; each table script carries its declaration's docstring."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from soundctm.experiments import Experiment, Table, get_table, table_ids
from soundctm.experiments.listening import ListeningTest
from soundctm.experiments.speed import SpeedTable
from soundctm.experiments.tables import REGISTRY, UnknownTable, table_id
from soundctm.experiments.tier import TINY

ROOT = Path(__file__).resolve().parent.parent
REPRO = ROOT / "reproduce"
RESULTS = ROOT / "results" / "tiny"
TABLES = ROOT / "soundctm" / "experiments" / "tables"


def test_registry_ids_in_all_py_order():
    assert table_ids() == ("instrument", "1", "2", "3", "6", "8", "7", "content", "10", "11", "12", "13", "5", "14",
                           "4", "9", "nu_omega", "steps_diagnostic")
    assert len(set(REGISTRY.values())) == len(REGISTRY)
    # one module per table, nothing else in the folder
    assert {p.stem for p in TABLES.glob("*.py")} - {"__init__"} == set(REGISTRY.values())


@pytest.mark.parametrize("key", table_ids())
def test_every_id_loads_an_experiment_named_as_its_files(key):
    t = get_table(key)
    assert isinstance(t, Experiment)
    assert t.name == REGISTRY[key]  # the module's name: results/<tier>/<name>.json, reproduce/<name>.py
    assert get_table(t.name) is t and table_id(t.name) == key  # "table3" names the same table as "3"
    assert (REPRO / f"{t.name}.py").exists()
    committed = RESULTS / f"{t.name}.json"
    if committed.exists():
        assert json.loads(committed.read_text())["meta"]["table"] == t.name
    # the protocol's members answer on every kind of experiment; the description is the declaration's docstring's
    # first paragraph
    assert isinstance(t.score_rows, tuple) and isinstance(t.model_runs(TINY), tuple)
    assert t.description == importlib.import_module(f"soundctm.experiments.tables.{t.name}").__doc__.split("\n\n")[0]


def test_committed_table_results_all_have_a_registered_table():
    names = {get_table(k).name for k in table_ids()}
    tables = {p.stem for p in RESULTS.glob("*.json") if "table" in json.loads(p.read_text()).get("meta", {})}
    assert tables and tables <= names, tables - names


def test_the_three_kinds_of_experiment():
    assert isinstance(get_table("3"), Table) and isinstance(get_table("8"), SpeedTable)
    assert isinstance(get_table("4"), ListeningTest) and isinstance(get_table("9"), ListeningTest)
    t8 = get_table("8")
    assert t8.score_rows == () and t8.items is None  # timed, not scored
    assert get_table("nu_omega").items.samples_per_caption == 1 and get_table("3").items is None
    assert not isinstance(object(), Experiment)


def test_unknown_id_names_the_known_ones():
    with pytest.raises(UnknownTable, match="unknown table 'table99'; known: instrument, 1, 2, 3"):
        get_table("table99")


def test_typed_fields_are_not_part_of_a_tables_identity():
    import dataclasses

    t = get_table("5")
    bare = dataclasses.replace(t, figures=(), items=None)
    assert bare == t and hash(bare) == hash(t)


def test_no_reproduce_script_edits_sys_path():
    bad = [p.name for p in sorted(REPRO.glob("*.py")) if "sys.path" in p.read_text()]
    assert not bad, f"reproduce/ scripts import the installed package, not a path they add: {bad}"


@pytest.mark.parametrize("key", table_ids())
def test_table_scripts_are_thin_and_carry_the_declarations_docstring(key):
    name = REGISTRY[key]
    script = (REPRO / f"{name}.py").read_text()
    module = (TABLES / f"{name}.py").read_text()
    assert ast.get_docstring(ast.parse(script), clean=False) == ast.get_docstring(ast.parse(module), clean=False)
    assert f'get_table("{key}")' in script and "TABLE" not in script and len(script.splitlines()) <= 30


def test_a_table_script_runs_from_another_folder(tmp_path):
    out = subprocess.run([sys.executable, str(REPRO / "table3.py"), "--help"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Table 3: full-band text-to-sound" in out.stdout and "--tier" in out.stdout
