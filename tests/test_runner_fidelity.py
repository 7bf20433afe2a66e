"""The teacher-ODE error as a per-item metric family of the experiments runner ("fidelity"): a row's latents
against its teacher's Heun-40 latents from the same z_T, caption and omega, on the tiny random-weight
configuration of tests/test_experiments_apps.py. Expectations: the teacher's own Heun-40 row scores exactly 0,
decoded zeros exactly 1, every other row the relative squared error recomputed here with numpy from the two
rows' latents; a row's table value is the mean over items with a bootstrap interval around it; rows without a
teacher reference (an application, a reference source) get no value."""

import numpy as np
import pytest
from test_experiments_apps import STUDENT, TEACHER, _tier

from soundctm.experiments.runner import Runner, fidelity_reference
from soundctm.experiments.spec import Claim, Row, Table

pytestmark = pytest.mark.usefixtures("one_thread")

OMEGA = 3.5


def _table():
    rows = (Row("teacher", run=TEACHER, sampler="heun", steps=40, omega=OMEGA),
            Row("teacher-euler-1", run=TEACHER, sampler="euler", steps=1, omega=OMEGA),
            Row("student-1", run=STUDENT, steps=1, omega=OMEGA),
            Row("student-2-w2", run=STUDENT, steps=2, omega=2.0),
            Row("bwe-2", sampler="bwe", run=STUDENT, steps=2, omega=OMEGA),
            Row("zeros", source="zeros"), Row("noise", source="noise"))
    claims = (Claim("F1", "the teacher's Heun-40 is on its own ODE", "improves", "fidelity", "zeros", "teacher",
                    subject="teacher"),)
    return Table("fid", "fidelity", rows, metrics=("fidelity",), claims=claims)


def _hand_error(z, ref) -> np.ndarray:
    z, ref = np.asarray(z, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return ((z - ref) ** 2).reshape(len(z), -1).sum(1) / (ref ** 2).reshape(len(ref), -1).sum(1)


def test_fidelity_rows_against_a_hand_computation(tmp_path):
    tier, table = _tier(tmp_path), _table()
    runner = Runner(tier, tmp_path / "cache", store=tmp_path / "store", log=lambda *a: None, workers=1)
    res = runner.run(table)
    assert res.columns["fidelity"] == "teacher-ODE error"
    rows = {r.name: r for r in table.rows}
    assert res.dists["teacher"]["fidelity"].value == 0.0
    assert res.dists["zeros"]["fidelity"].value == 1.0
    assert "fidelity" not in res.dists["bwe-2"] and "fidelity" not in res.dists["noise"]
    for name in ("teacher-euler-1", "student-1", "student-2-w2"):
        ref = fidelity_reference(rows[name])
        assert (ref.run, ref.sampler, ref.steps, ref.omega) == (TEACHER, "heun", 40, rows[name].omega)
        want = _hand_error(runner.latents(rows[name]), runner.latents(ref))
        d = res.dists[name]["fidelity"]
        assert d.value == pytest.approx(want.mean(), rel=1e-12)
        lo, hi = d.interval()
        assert lo <= d.value <= hi and lo < hi
        assert np.all(want > 0)
    # the omega-5 teacher reference of the omega-3.5 rows is the table's own teacher row, bit for bit
    assert np.array_equal(runner.latents(fidelity_reference(rows["student-1"])), runner.latents(rows["teacher"]))
    (v,) = res.verdicts
    assert v.supported


def test_a_cached_fidelity_is_reused_and_the_reference_is_part_of_its_key(tmp_path):
    tier, table = _tier(tmp_path), _table()
    runner = Runner(tier, tmp_path / "cache", store=tmp_path / "store", log=lambda *a: None, workers=1)
    first = runner.run(table)
    files = sorted(p.name for p in (tmp_path / "store").rglob("item-fidelity-*.npy"))
    assert len(files) == 5  # teacher, teacher-euler-1, student-1, student-2-w2 and zeros (its 1s, no reference)
    again = Runner(tier, tmp_path / "cache", store=tmp_path / "store", log=lambda *a: None, workers=1).run(table)
    assert sorted(p.name for p in (tmp_path / "store").rglob("item-fidelity-*.npy")) == files
    for name in first.dists:
        if "fidelity" in first.dists[name]:
            assert again.dists[name]["fidelity"].value == first.dists[name]["fidelity"].value
