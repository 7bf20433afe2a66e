"""What a table is, as data: runs (what to build), rows (how to sample or apply a run), claims
(predicates over rows' metric intervals, each with its margin and its trivial-baseline self-test)
and the table itself (rows, metric columns, the paper's numbers, claims, its own item set and figures).

Every object is a frozen dataclass whose `settings()` is a plain dict; the runner hashes those
dicts to name the cached artifacts, so two tables that declare the same run or row share them.

`Experiment` is what every reproduced experiment is to the command line and `reproduce/all.py`: a scored
`Table`, a speed table (`experiments.speed.SpeedTable`) or a listening test (`experiments.listening.ListeningTest`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

__all__ = ["Run", "Row", "Claim", "Items", "Table", "Experiment", "SOURCES", "SAMPLERS", "frozen_options",
           "rows_runs", "set_table_executor"]

# Where a row's audio comes from. "sampler": a trained run sampled with `sampler`; the others are
# the instrument's reference rows (no model): VAE reconstructions of held-out real takes, the real
# takes themselves, decoded all-zero latents, decoded N(0, sigma_data^2) latents, real takes scored
# against another clip's captions. "pair": a paired distance between two other rows' audio of the same items
# (`Row.pair`; `experiments.pairs`).
SOURCES = ("sampler", "vae-recon", "real-other", "zeros", "noise", "shuffled-captions", "lowpass", "pair")
SAMPLERS = ("ctm", "heun", "euler", "guidance", "ditto", "bwe", "cm")
# samplers of a student: Algorithm 1, and the applications built on it (soundctm.apps, experiments.applications):
# loss-based guidance (Algorithm 3), DITTO-2 (z_T optimisation, then Algorithm 1), bandwidth extension;
# "lowpass" (a source) is the low-passed real clip that bandwidth extension starts from.
# "cm": the consistency models' multistep sampler (`sampling.cm_sample`) of a "cd" / "lcm" student (soundctm.cd).
STUDENT_SAMPLERS = ("ctm", "guidance", "ditto", "bwe", "cm")
CD_OBJECTIVES = ("cd", "lcm")  # the students `cm` samples (their training option `objective`)
KINDS = ("improves", "close", "comparable", "faster", "heavier", "separated", "ordered")
COST_KINDS = ("faster", "heavier")  # claims about cost, not quality: no trivial-baseline self-test


def frozen_options(options: dict | tuple | None) -> tuple[tuple[str, Any], ...]:
    """A dict of training-config overrides as a sorted tuple (hashable, order-free)."""
    if not options:
        return ()
    items = options.items() if isinstance(options, dict) else options
    return tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in items))


@dataclass(frozen=True)
class Run:
    """What to build: a teacher or a student (with its teacher), its training overrides and seeds.

    `options` are `soundctm.train.loop.TrainConfig` fields (e.g. `(("distance", "l2_s"),)`); `seeds`
    are training seeds: a row over a run with several seeds pools their samples.
    """

    kind: str  # "teacher" | "student"
    backbone: str = "dit"  # "dit" | "unet": the tier maps it to its preset (tiny-dit, paper-dit, ...)
    options: tuple[tuple[str, Any], ...] = ()
    seeds: tuple[int, ...] = (0,)
    teacher: Run | None = None

    def __post_init__(self):
        if self.kind not in ("teacher", "student"):
            raise ValueError(f"a run is a 'teacher' or a 'student', got {self.kind!r}")
        if self.kind == "student" and (self.teacher is None or self.teacher.kind != "teacher"):
            raise ValueError("a student run needs a teacher run")
        if not self.seeds:
            raise ValueError("a run needs at least one training seed")
        object.__setattr__(self, "options", frozen_options(self.options))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))

    def with_seeds(self, *seeds: int) -> Run:
        return replace(self, seeds=tuple(seeds))

    def single(self, seed: int) -> Run:
        """This run restricted to one training seed (the unit the runner trains)."""
        return replace(self, seeds=(int(seed),))

    def settings(self) -> dict:
        return {
            "kind": self.kind,
            "backbone": self.backbone,
            "options": [list(kv) for kv in self.options],
            "seeds": list(self.seeds),
            "teacher": self.teacher.settings() if self.teacher is not None else None,
        }


@dataclass(frozen=True)
class Row:
    """One row of a table: a source of audio and, for a trained run, how to sample it.

    sampler "heun": the teacher's Heun solver on its N-point Karras grid (`steps` = N, the paper's
    "40 steps"); "euler": `steps` Euler steps on steps + 1 Karras levels ending at 0, so steps = 1 is
    one step from sigma_max to 0, i.e. the posterior mean D(z_T, sigma_max); "ctm": Algorithm 1 with
    `steps` jumps, CFG `omega`, `nu` (Eq. 10) and `gamma`.
    """

    name: str
    source: str = "sampler"
    run: Run | None = None
    sampler: str = "ctm"
    steps: int | None = None
    omega: float = 5.0
    nu: float = 1.0
    gamma: float = 0.0
    label: str | None = None  # display name (default: name)
    paper: tuple[tuple[str, float | None], ...] = ()  # the paper's numbers for this row
    not_run: str | None = None  # a row we cannot run (e.g. a baseline whose checkpoint is not public)
    timed: bool = False  # measure seconds per sample
    app: tuple[tuple[str, Any], ...] = ()  # options of an application row (`experiments.applications`)
    train_memory: bool = False  # measure the peak training memory of the row's run (every training seed)
    # source "pair": the two rows (a, b) whose audio of the same items (same z_T and caption) this row compares
    pair: tuple[Row, Row] | None = None

    def __post_init__(self):
        object.__setattr__(self, "app", frozen_options(self.app))
        if self.source not in SOURCES:
            raise ValueError(f"row {self.name!r}: unknown source {self.source!r}; expected one of {SOURCES}")
        if (self.source == "pair") != (self.pair is not None):
            raise ValueError(f"row {self.name!r}: a row has two rows in `pair` exactly when its source is 'pair'")
        if self.pair is not None:
            object.__setattr__(self, "pair", tuple(self.pair))
            if len(self.pair) != 2 or not all(isinstance(p, Row) for p in self.pair):
                raise ValueError(f"row {self.name!r}: `pair` needs two Rows, got {self.pair!r}")
            bad = [p.name for p in self.pair if p.source == "pair" or p.not_run is not None]
            if bad:
                raise ValueError(f"row {self.name!r}: a pair compares two rows with audio; {bad} have none")
        if self.not_run is None and self.source == "sampler":
            if self.run is None:
                raise ValueError(f"row {self.name!r} samples a run but has none")
            if self.sampler not in SAMPLERS:
                raise ValueError(f"row {self.name!r}: unknown sampler {self.sampler!r}; expected one of {SAMPLERS}")
            if self.steps is None or self.steps < 1:
                raise ValueError(f"row {self.name!r}: steps must be >= 1")
            if not 0.0 <= self.gamma <= 1.0:
                raise ValueError(f"row {self.name!r}: gamma must be in [0, 1]")
            if (self.sampler in STUDENT_SAMPLERS) != (self.run.kind == "student"):
                raise ValueError(f"row {self.name!r}: sampler {self.sampler!r} does not fit a {self.run.kind} run")
            objective = dict(self.run.options).get("objective", "ctm")
            if self.run.kind == "student" and (self.sampler == "cm") != (objective in CD_OBJECTIVES):
                raise ValueError(f"row {self.name!r}: sampler {self.sampler!r} does not fit a student of objective "
                                 f"{objective!r} (a 'cd' / 'lcm' student is sampled with 'cm', a SoundCTM one "
                                 "with the others)")
        if isinstance(self.paper, dict):
            object.__setattr__(self, "paper", tuple(self.paper.items()))

    @property
    def display(self) -> str:
        return self.label or self.name

    def paper_dict(self) -> dict:
        return dict(self.paper)

    def generation_settings(self) -> dict:
        """What determines this row's samples (given the units, seeds and the models)."""
        d = {"source": self.source}
        if self.source == "sampler":
            d.update(run=self.run.settings(), sampler=self.sampler, steps=self.steps, omega=self.omega,
                     nu=self.nu, gamma=self.gamma)
        if self.app:  # only application rows: every other row keeps its artifact key
            d["app"] = [list(kv) for kv in self.app]
        if self.pair is not None:
            d["pair"] = [p.generation_settings() for p in self.pair]
        return d

    def runs(self) -> tuple[Run, ...]:
        """The runs this row's audio needs: its own, or a pair's two rows' runs."""
        if self.pair is not None:
            return tuple(r for p in self.pair for r in p.runs())
        return (self.run,) if self.run is not None and self.not_run is None else ()


@dataclass(frozen=True)
class Claim:
    """A predicate over rows' metric bootstrap distributions (see `soundctm.experiments.claims`).

    kind:
      "improves": `b` is better than `a` on `metric`: the 95 % interval of the improvement lies
                  above `margin` (improvement = M(a) - M(b) for lower-is-better metrics).
      "close":    on the normalised quality scale q = (M(zeros) - M(row)) / (M(zeros) - M(vae-recon))
                  (0: the trivial baseline, 1: the codec's limit), `a` is within `margin` of `b`
                  or better: the interval's lower end of q(a) - q(b) is >= -margin.
      "comparable": on the q scale, `a` and `b` are within `margin` of each other both ways: the
                  interval of q(a) - q(b) lies inside [-margin, margin].
      "faster":   row `a` is at least `margin` times faster than row `b` (slowest of a's timing
                  repeats against the fastest of b's).
      "heavier":  training row `a`'s run takes at least `margin` times the memory of `b`'s (a's
                  smallest training seed against b's largest).
      "separated": (the instrument's ladder, "a << b") a is better than b and their 95 % intervals
                  do not overlap.
      "ordered":  (the ladder's "a < b") a's value is better than b's, or equal with `margin` > 0
                  read as "a <= b" within margin.
    `subject` is the row the self-test replaces by `trivial` (the decoded-zeros row): a quality claim
    that still holds with it is broken, and the report says so.
    """

    id: str
    text: str
    kind: str
    metric: str | None
    a: str
    b: str
    margin: float = 0.0
    subject: str | None = None
    trivial: str = "zeros"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id}: unknown kind {self.kind!r}; expected one of {KINDS}")
        if self.kind not in COST_KINDS and self.metric is None:
            raise ValueError(f"claim {self.id}: a quality claim needs a metric")

    @property
    def quality(self) -> bool:
        """A claim about a system's quality, re-checked with the trivial row in place of `subject`."""
        return self.kind not in COST_KINDS and self.subject is not None

    def substituted(self) -> Claim:
        """The self-test: the same claim with the trivial row in place of the subject."""
        subj = self.subject
        return replace(self, id=f"{self.id}/self-test", a=self.trivial if self.a == subj else self.a,
                       b=self.trivial if self.b == subj else self.b, subject=None)


@dataclass(frozen=True)
class Items:
    """A table's own item set (`experiments.main.items_runner`, `Runner.with_items`): the first `n_units` test
    clips, `samples_per_caption` samples per caption; None keeps the runner's (the tier's or the command
    line's). E.g. `Items(samples_per_caption=1)` for a grid of many rows."""

    n_units: int | None = None
    samples_per_caption: int | None = None


def rows_runs(rows) -> tuple[Run, ...]:
    """The distinct runs `rows` sample (a pair row: its two rows'), in row order."""
    return tuple(dict.fromkeys(run for r in rows for run in r.runs()))


@runtime_checkable
class Experiment(Protocol):
    """A reproduced experiment, as `experiments.main.run_table` and `reproduce/all.py` run it: a scored `Table`, a
    speed table (`experiments.speed.SpeedTable`) or a listening test (`experiments.listening.ListeningTest`).

    `name` names its result files (results/<tier>/<name>.json, ...); `items` is its own item set (None: the
    runner's); `score_rows` are the rows `Runner.prepare` scores for it (a speed table: none, it times its
    models); `model_runs(tier)` the runs it needs trained on `tier` (their teachers are added by
    `graph.table_runs`); `execute(args, runner)` runs it with the shared command line's `args`
    (`experiments.main.parser`) on `runner` (None: a new one), writes its files and returns the result record.
    """

    name: str
    title: str
    description: str
    items: Items | None

    @property
    def score_rows(self) -> tuple[Row, ...]: ...

    def model_runs(self, tier) -> tuple[Run, ...]: ...

    def execute(self, args, runner=None) -> dict: ...


# What `Table.execute` runs: `experiments.main.run_scored` (score the rows on the runner, write the files, draw
# the figures). This module imports nothing of the package, so main, above it, hands its executor down
# (`set_table_executor`) when it is imported, which importing any module of soundctm.experiments does.
_TABLE_EXECUTOR: list[Callable[..., dict]] = []


def set_table_executor(fn: Callable[..., dict]) -> Callable[..., dict]:
    """Make `fn(table, args, runner)` what `Table.execute` runs (`experiments.main.run_scored`)."""
    _TABLE_EXECUTOR[:] = [fn]
    return fn


@dataclass(frozen=True)
class Table:
    """A table: rows, metric families (default "fd", "kid", "kl", "clap" and "fidelity", the teacher-ODE error of
    every sampler row, `soundctm.experiments.aggregate.fidelity_reference`), the paper's columns, claims.

    `items`: the table's own item set (None: the runner's); `figures`: functions (runner, result, out_dir) ->
    path of a PNG (`experiments.figures`, `experiments.applications`), drawn after the table is written. Neither
    is part of the table's identity (equality, hash): they do not change what is scored."""

    name: str
    title: str
    rows: tuple[Row, ...]
    metrics: tuple[str, ...] = ("fd", "kid", "kl", "clap", "fidelity")
    paper_columns: tuple[str, ...] = ()
    claims: tuple[Claim, ...] = ()
    description: str = ""
    items: Items | None = field(default=None, hash=False, compare=False)
    figures: tuple[Callable, ...] = field(default=(), hash=False, compare=False)

    def __post_init__(self):
        if isinstance(self.items, dict):
            object.__setattr__(self, "items", Items(**self.items))
        object.__setattr__(self, "figures", tuple(self.figures))
        names = [r.name for r in self.rows]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"table {self.name}: duplicate row names {dup}")
        for c in self.claims:
            for r in {c.a, c.b, c.trivial} | ({"vae-recon"} if c.kind in ("close", "comparable") else set()):
                if r not in names:
                    raise ValueError(f"table {self.name}: claim {c.id} names row {r!r}, which the table lacks")

    @property
    def score_rows(self) -> tuple[Row, ...]:
        """What `Runner.prepare` scores for this table: its rows."""
        return self.rows

    def model_runs(self, tier=None) -> tuple[Run, ...]:
        """The runs its rows sample (a pair row: its two rows'), on any tier."""
        return rows_runs(self.rows)

    def execute(self, args, runner=None) -> dict:
        """Score the table on `runner` (its own item set, unless `args` gives one) and write
        results/<tier>/<name>.{csv,md,json} and its figures (`experiments.main.run_scored`)."""
        if not _TABLE_EXECUTOR:  # never: importing this module imports the package, hence main
            raise RuntimeError("no table executor: soundctm.experiments.main was not imported")
        return _TABLE_EXECUTOR[0](self, args, runner)

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"table {self.name} has no row {name!r}")

    def settings(self) -> dict:
        return asdict(self)
