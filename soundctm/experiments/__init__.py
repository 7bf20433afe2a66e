"""Experiments as declarations: `spec` (Run, Row, Claim, Table, the Experiment protocol), `tier` (TINY, PAPER),
`runner` (the artifact graph), `claims` (intervals, margins, self-tests), `report` (DataFrames -> files),
`regression` (committed references, explicit update only), `main` (the shared command line), `tables` (every
reproduced table's declaration and their registry: `get_table("3")`)."""

from soundctm.experiments.catalog import INSTRUMENT_ROWS, STUDENT, TEACHER, reference_rows, student_row, teacher_row
from soundctm.experiments.main import cli, run_table
from soundctm.experiments.spec import Claim, Experiment, Items, Row, Run, Table
from soundctm.experiments.tables import get_table, table_ids
from soundctm.experiments.tier import PAPER, TINY, Tier, get_tier

__all__ = ["Run", "Row", "Claim", "Items", "Table", "Experiment", "Tier", "TINY", "PAPER", "get_tier", "TEACHER",
           "STUDENT", "INSTRUMENT_ROWS", "reference_rows", "student_row", "teacher_row", "cli", "run_table",
           "get_table", "table_ids"]
