"""The runner's scheduling decisions without starting Ray: when it uses Ray, what a task carries, which
resources each tier asks for, where a task finds a model, and the scores file's commit point.
(The tasks themselves on a simulated cluster: tests/test_cluster_runner.py.)"""

import json
from dataclasses import replace

import numpy as np
import pytest

from soundctm.data.latent_cache import file_checksum
from soundctm.experiments import artifacts as K
from soundctm.experiments import graph as GR
from soundctm.experiments import runner as RN
from soundctm.experiments.stats import ItemScores
from soundctm.experiments.store import open_store
from soundctm.experiments.tier import PAPER, TINY


def test_when_the_runner_uses_ray(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    pytest.importorskip("ray")
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray session is connected in this process")
    from soundctm import distributed

    monkeypatch.setattr(distributed, "cluster_address", lambda: None)  # whatever `ray start` ran on this machine
    mk = lambda w: RN.Runner(TINY, tmp_path, workers=w, log=lambda *a: None)
    assert not mk(1).on_ray() and mk(2).on_ray() and not mk(0).on_ray()
    # workers=0 follows a running cluster: RAY_ADDRESS (or what `ray start` recorded) says there is one
    monkeypatch.undo()
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    assert distributed.cluster_address() == "127.0.0.1:1"
    assert mk(0).on_ray() and not mk(1).on_ray()


def test_a_registered_tier_travels_by_name_any_other_by_value(tmp_path):
    r = RN.Runner(PAPER, tmp_path, log=lambda *a: None)
    spec = GR.task_spec(r)
    assert spec["tier"] == "paper"  # the worker evaluates PAPER itself (its device: cuda where a GPU is)
    assert GR.worker_runner(spec).tier is PAPER
    custom = replace(TINY, n_units=3)
    spec = GR.task_spec(RN.Runner(custom, tmp_path, log=lambda *a: None))
    assert spec["tier"] is custom and GR.worker_runner(spec).tier is custom
    assert spec["store"] == str((tmp_path / "tiny" / "artifacts").resolve())  # absolute: workers' cwd differs
    assert spec["cache"] == str(tmp_path.resolve())


def test_each_tier_asks_for_the_resources_its_nodes_need():
    for kind in ("train", "score", "reference", "timing"):
        assert PAPER.task_resources(kind)["num_gpus"] == 1 and PAPER.task_resources(kind)["num_cpus"] >= 1
        assert TINY.task_resources(kind) == {"num_cpus": 1}
    assert PAPER.task_resources("something-else") == {"num_cpus": 1}
    got = PAPER.task_resources("train")
    got["num_gpus"] = 8  # a copy: the tier is not changed through it
    assert PAPER.task_resources("train")["num_gpus"] == 1


def test_a_task_reads_a_model_from_where_it_was_made_else_from_the_store(tmp_path):
    store = open_store(tmp_path / "store")
    export = tmp_path / "runs" / "export.safetensors"
    export.parent.mkdir()
    export.write_bytes(b"weights" * 100)
    sha = file_checksum(export)
    with pytest.raises(FileNotFoundError, match=sha):
        GR.local_model(store, sha, None)
    store.put_file(K.model_name(sha), export)
    assert GR.local_model(store, sha, str(export)) == export  # readable and the same bytes: the original
    assert GR.local_model(store, sha, None) == store.root / "models" / f"{sha}.safetensors"
    export.write_bytes(b"other bytes")  # the original changed (or is another node's path): the store's copy
    assert GR.local_model(store, sha, str(export)) == store.root / "models" / f"{sha}.safetensors"
    assert GR.local_model(store, sha, str(tmp_path / "nowhere")).read_bytes() == b"weights" * 100


def test_the_scores_file_is_the_commit_point(tmp_path, monkeypatch):
    sc = ItemScores(np.arange(3), np.ones((5, 2)), np.array([1, 2, 2]), None, np.array([0.1, 0.2, 0.3]))
    path = tmp_path / "scores-x.npz"
    real = np.savez

    def dies(f, **arrays):
        f.write(b"PK half a zip")
        raise KeyboardInterrupt  # the process is interrupted mid-write

    monkeypatch.setattr(np, "savez", dies)
    with pytest.raises(KeyboardInterrupt):
        K.SCORES.save(path, sc, {"row": "x"})
    assert not path.exists() and json.loads(path.with_suffix(".json").read_text()) == {"row": "x"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores-x.json"]  # no temporary file left
    monkeypatch.setattr(np, "savez", real)
    K.SCORES.save(path, sc, {"row": "x"})
    back = K.SCORES.load(path)
    assert np.array_equal(back.frames, sc.frames) and np.array_equal(back.clap, sc.clap)


def test_the_runs_a_table_needs_include_those_it_times(tmp_path):
    from soundctm.experiments.catalog import AUDIO_LCM, CONSISTENCY_TTA, STUDENT, TEACHER, UNET_TEACHER
    from soundctm.experiments.tables import get_table

    table8 = get_table("8")
    tiny = RN.Runner(TINY, tmp_path, log=lambda *a: None)
    # Table 8 scores no rows but times the tier's trained models: they (and their teachers) are trained
    # with every other table's runs, so that --workers trains them side by side
    assert table8.score_rows == () and table8.rows == ()
    assert tiny.table_runs([table8]) == {STUDENT, TEACHER, CONSISTENCY_TTA, AUDIO_LCM, UNET_TEACHER}
    assert RN.Runner(PAPER, tmp_path, log=lambda *a: None).table_runs([table8]) == set()  # random weights there


def test_a_task_that_found_its_artifact_keeps_the_makers_record(tmp_path):
    store = open_store(tmp_path / "store")
    made = GR.NodeLog(store, "train-x", "train").done(artifact="models/a.safetensors")
    first = json.loads(store.read_text("nodes/train-x.json"))
    assert made["seconds"] == pytest.approx(first["seconds"]) and first["artifact"] == "models/a.safetensors"
    GR.NodeLog(store, "train-x", "train").done(reused=True, artifact="models/a.safetensors")
    assert json.loads(store.read_text("nodes/train-x.json")) == first  # when the work was done, not found
    GR.NodeLog(store, "train-y", "train").done(reused=True)  # found, but no maker's record: this one
    assert json.loads(store.read_text("nodes/train-y.json"))["key"] == "train-y"
    GR.NodeLog(store, "train-x", "train").done()  # made again (e.g. a retry): the new record
    assert json.loads(store.read_text("nodes/train-x.json"))["start"] > first["start"]
