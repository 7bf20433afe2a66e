"""From scores to a table's result: metric intervals per row, the seed-to-seed spread, the column names
and the claims' verdicts. Pure functions of what the runner measured (no models, no files), so a table's
numbers can be recomputed from its cached scores alone."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from soundctm.experiments import applications as A
from soundctm.experiments import pairs as P
from soundctm.experiments.claims import Verdict, check
from soundctm.experiments.spec import Row, Table
from soundctm.experiments.stats import Bootstrap, Dist, ItemScores, item_mean_dist, metric_dists
from soundctm.experiments.tier import Components, Tier

__all__ = ["TableResult", "FIDELITY", "REFERENCE_STEPS", "fidelity_reference", "has_fidelity", "score_families",
           "item_families", "row_dists", "add_item_metric", "columns", "verdicts"]

FIDELITY = "fidelity"  # the per-item metric family of the teacher-ODE error (docs/fidelity.md)
REFERENCE_STEPS = 40  # the teacher's Heun solve the error is measured against (its 40-point Karras grid)


def fidelity_reference(row: Row) -> Row | None:
    """The row a sampler row's teacher-ODE error is measured against: its teacher's (a teacher row: its own
    run's) Heun solve on the 40-point grid with the row's omega, from the same z_T and caption; None for a row
    without one (a reference source, an application row)."""
    if row.source != "sampler" or A.is_app(row) or row.not_run is not None:
        return None
    teacher = row.run if row.run.kind == "teacher" else row.run.teacher
    return Row(f"{row.name}-teacher-ode", run=teacher, sampler="heun", steps=REFERENCE_STEPS, omega=row.omega)


def has_fidelity(row: Row) -> bool:
    """Whether `row` has a teacher-ODE error: a sampler row with a teacher reference, or decoded zeros (1)."""
    return row.source == "zeros" or fidelity_reference(row) is not None


@dataclass
class TableResult:
    table: Table
    tier: Tier
    dists: dict[str, dict[str, Dist]]
    seconds: dict[str, list[float]]
    verdicts: list[Verdict]
    columns: dict[str, str]  # metric family -> column name, e.g. "fd" -> "FD[tiny-evt]"
    n_items: dict[str, int]
    models: dict[str, list[str]]
    wall_seconds: float
    skipped: dict[str, str] = field(default_factory=dict)
    memory: dict[str, list[float]] = field(default_factory=dict)  # MiB per training seed (`Row.train_memory`)
    memory_column: str | None = None
    # rows over several training seeds: each metric's value on the items of each seed (seed-to-seed spread)
    seed_values: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def score_families(table: Table, row: Row, embedders) -> list[str]:
    """The embedder metric families of `table` that `row` is scored on: a row of shuffled captions has the
    same audio as the real other take, so only the text-aware metrics (KL, CLAP) say anything of it."""
    fams = [m for m in table.metrics if m in embedders]
    return [m for m in fams if m in ("kl", "clap")] if row.source == "shuffled-captions" else fams


def item_families(table: Table, row: Row, has_fidelity: bool) -> list[str]:
    """The per-item metric families (`applications.ITEM_METRICS`) of `table` that `row` has."""
    if row.source == "shuffled-captions":
        return []
    return [m for m in table.metrics if m in A.ITEM_METRICS and (m != FIDELITY or has_fidelity)]


def row_dists(sc: ItemScores, ref: ItemScores, fams: list[str], boot: Bootstrap, n_seeds: int, n_units: int,
              seed: int) -> tuple[dict[str, Dist], dict[str, list[float]] | None]:
    """A row's metric intervals (bootstrap over test clips) and, for a row over several training seeds, each
    metric's value on the items of each seed (item i came from seed number i mod n)."""
    dists = metric_dists(sc, ref, fams, boot)
    if n_seeds <= 1:
        return dists, None
    seed_of = np.arange(len(sc.unit)) % n_seeds
    one = Bootstrap(n_units, 2, seed)
    per = [metric_dists(sc.subset(seed_of == k), ref, fams, one) for k in range(n_seeds)]
    return dists, {m: [p[m].value for p in per] for m in dists}


def add_item_metric(dists: dict[str, Dist], seed_values: dict[str, list[float]] | None, family: str,
                    values: np.ndarray, unit: np.ndarray, boot: Bootstrap, n_seeds: int) -> None:
    """Put a per-item metric's mean over items (bootstrap over test clips) into a row's `dists` and, over
    several training seeds, its mean on each seed's items into `seed_values`."""
    dists[family] = item_mean_dist(values, unit, boot)
    if seed_values is not None:
        seed_values[family] = [float(values[j::n_seeds].mean()) for j in range(n_seeds)]


def columns(metrics, comp: Components) -> dict[str, str]:
    """Metric family -> its column name: an embedder's family with the embedder's tag ("FD[tiny-evt]"), a
    per-item or a pair metric by its label."""
    e = comp.embedders
    out = {m: f"{m.upper()}[{e[m].tag}]" if m in e else A.ITEM_METRICS[m] for m in metrics
           if m in e or m in A.ITEM_METRICS}
    out.update({m: P.column(comp, m) for m in metrics if m in P.PAIR_METRICS})
    return out


def verdicts(table: Table, dists, seconds, memory) -> list[Verdict]:
    """Every claim of `table` decided on the intervals (`claims.check`)."""
    return [check(c, dists, seconds, memory) for c in table.claims]
