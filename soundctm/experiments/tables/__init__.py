"""Every reproduced table, declared: one module per table (`tables/table3.py`, `tables/instrument.py`, ...), each
defining `TABLE` (a `spec.Experiment`: a scored `Table`, Table 8's `speed.SpeedTable` or a listening test's
`listening.ListeningTest`), and the one registry of them.

`REGISTRY` maps a table's id ("instrument", "1" ... "14", "content", "nu_omega", "steps_diagnostic") to the module
that declares it, in the order `reproduce/all.py` runs them; `get_table(id)` imports that module when its table is
first asked for (the declarations import figure and application code) and returns its `TABLE`; "table3" names
the same table as "3". A table's `name` is its module's name, which names its result files
(results/<tier>/table3.json, ...). `reproduce/<module>.py` runs one table (`experiments.main.cli`).
"""

from __future__ import annotations

import importlib

from soundctm.experiments.spec import Experiment

__all__ = ["REGISTRY", "UnknownTable", "table_id", "table_ids", "get_table"]

# table id -> module of this package declaring its TABLE, in reproduce/all.py's order
REGISTRY: dict[str, str] = {
    "instrument": "instrument", "1": "table1", "2": "table2", "3": "table3", "6": "table6", "8": "table8",
    "7": "table7", "content": "content", "10": "table10", "11": "table11", "12": "table12", "13": "table13",
    "5": "table5", "14": "table14", "4": "table4", "9": "table9", "nu_omega": "nu_omega",
    "steps_diagnostic": "steps_diagnostic",
}


class UnknownTable(LookupError):
    """A table id the registry does not have."""


def table_ids() -> tuple[str, ...]:
    """Every table id, in the registry's order."""
    return tuple(REGISTRY)


def table_id(key: str) -> str:
    """The registry id of `key`: an id ("3", "instrument") or a table's name ("table3")."""
    key = str(key).strip()
    for k in (key, key.removeprefix("table")):
        if k in REGISTRY:
            return k
    raise UnknownTable(f"unknown table {key!r}; known: {', '.join(REGISTRY)}")


def get_table(key: str) -> Experiment:
    """The declaration (`TABLE`) of table `key` (`table_id`), its module imported on first use."""
    return importlib.import_module(f"{__name__}.{REGISTRY[table_id(key)]}").TABLE
