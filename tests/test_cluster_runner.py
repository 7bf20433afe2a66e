"""The runner's artifact nodes on a simulated Ray cluster (`ray.cluster_utils.Cluster`: a head and
worker nodes, each its own raylet, on this machine; GPUs are logical resources).

* The tasks go where the tier's resources are: with GPU-asking resources (the paper tier's shape)
  every training and scoring task runs on a GPU worker, both GPU workers work, and neither the head
  (no CPUs for tasks) nor a CPU-only worker runs any.
* Killing a worker node mid-run (once a first artifact has landed, while that node runs a task)
  loses no finished artifact (same bytes, same file, still made by the killed node), the task it was
  running is retried elsewhere, and the table's numbers equal those of an undisturbed run.
  `SOUNDCTM_CLUSTER_KILLS=N` repeats the killed run N times (the reliability figure of docs/cluster.md).

The workload is tiny: the committed tiny VAE / CLAP / evaluator on 4 test clips (1 caption, 1 sample),
a teacher and a two-seed student trained for a few steps on synthetic latents.
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from soundctm.data.latent_cache import file_checksum  # noqa: E402
from soundctm.experiments import regression as R  # noqa: E402
from soundctm.experiments.catalog import reference_rows, student_row, teacher_row  # noqa: E402
from soundctm.experiments.runner import Runner  # noqa: E402
from soundctm.experiments.spec import Run, Table  # noqa: E402
from soundctm.experiments.store import open_store  # noqa: E402
from soundctm.io import load_safetensors  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# the tier's functions are defined here: Ray ships them (and this module's globals) by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

CORPUS_CACHE = Path(os.environ.get("SOUNDCTM_TEST_CACHE", Path(tempfile.gettempdir()) / "soundctm-test-cache"))
TRAIN_STEPS = 6
GPU = {"num_cpus": 1, "num_gpus": 1}

TEACHER = Run("teacher", "dit")
STUDENT = Run("student", "dit", options={"distance": "d_teacher"}, seeds=(0, 1), teacher=TEACHER)
TABLE = Table("cluster", "simulated-cluster workload", metrics=("fd", "kid", "kl", "clap"), rows=(
    teacher_row(steps=4, run=TEACHER), student_row(1, run=STUDENT, timed=True), student_row(2, run=STUDENT),
    student_row(4, nu=5.0, run=STUDENT), *reference_rows("vae-recon", "zeros")))


def _build(run, teacher_export, cache=None):
    """A few training steps on synthetic latents (bit-reproducible: one thread, seeded), cached by settings."""
    from soundctm.experiments.runner import settings_hash
    from soundctm.train.loop import TrainConfig, run_training

    (seed,) = run.seeds
    key = settings_hash([run.settings(), file_checksum(teacher_export) if teacher_export else None])
    run_dir = Path(cache) / "cluster-runs" / key
    export = run_dir / "export.safetensors"
    if not export.exists():
        cfg = TrainConfig(kind="teacher" if run.kind == "teacher" else "distill", preset="tiny-dit",
                          steps=TRAIN_STEPS, batch_size=4, data="synthetic", synthetic_clips=8, checkpoint_every=100,
                          seed=seed, threads=1, teacher_path=str(teacher_export) if teacher_export else None,
                          **({"distance": dict(run.options)["distance"]} if run.kind == "student" else {}))
        run_training(cfg, run_dir, progress=False, log=lambda *a, **k: None)
    return export


def _tier(resources: dict):
    base = R.committed_tier()

    def load(cache=None):
        return base.load(CORPUS_CACHE)  # the procedural corpus, shared between tests

    return replace(base, name="cluster-test", load=load, build=_build, n_units=4, n_boot=50,
                   resources=resources)


CPU_TIER = _tier({})
GPU_TIER = _tier({"train": GPU, "score": GPU, "reference": GPU, "timing": GPU})


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")
    mp.delenv("RAY_ADDRESS", raising=False)
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Unix socket paths are limited to 107 bytes
    # Cluster writes the head's address to <default temp root>/ray/ray_current_cluster whatever temp_dir
    # it is given; RAY_TMPDIR makes that root this session's own folder (a fresh TMPDIR has no ray/)
    mp.setenv("RAY_TMPDIR", temp)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0,
                                                      "temp_dir": os.path.join(temp, "ray"),
                                                      "include_dashboard": False})
    gpu = [c.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    cpu = [c.add_node(num_cpus=1)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    try:
        yield SimpleNamespace(c=c, head=c.head_node.node_id, gpu=gpu, cpu=cpu)
    finally:
        ray.shutdown()
        c.shutdown()
        mp.undo()
        shutil.rmtree(temp, ignore_errors=True)


def _runner(tier, root: Path, **kw) -> Runner:
    return Runner(tier, root / "cache", store=root / "store", log=lambda *a: None, **kw)


def _records(store) -> dict[str, dict]:
    """nodes/<key>.json: the finished tasks, by key."""
    return {Path(n).stem: json.loads(store.read_text(n)) for n in store.list("nodes") if n.endswith(".json")}


def _started(store) -> list[tuple[str, str]]:
    """(key, node id prefix) of every task attempt that began."""
    out = []
    for n in store.list("nodes"):
        base = Path(n).name
        if ".started." in base:
            key, rest = base.split(".started.")
            out.append((key, rest.split(".")[0]))
    return out


def _numbers(res) -> dict:
    return {(row, m): (d.value, d.samples.tobytes()) for row, ds in res.dists.items() for m, d in ds.items()}


def _weights(runner: Runner) -> dict:
    out = {}
    for run in (TEACHER, STUDENT):
        for s, p in zip(run.seeds, runner.exports(run)):
            tensors, _ = load_safetensors(p)
            out[(run.kind, s)] = {k: v.numpy().tobytes() for k, v in tensors.items()}
    return out


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_tasks_go_to_gpu_workers_only_and_spread_over_them(cluster, tmp_path):
    runner = _runner(GPU_TIER, tmp_path)
    assert runner.on_ray()
    res = runner.run(TABLE)
    recs = _records(runner.artifacts)
    kinds = sorted(r["kind"] for r in recs.values())
    # teacher + 2 student seeds; the rows and the reference; student-1's seconds per sample
    assert kinds == sorted(["train"] * 3 + ["score"] * len(TABLE.rows) + ["reference", "timing"])
    assert len(res.seconds["student-1"]) == GPU_TIER.timing_repeats
    used = {r["node_id"] for r in recs.values()}
    gpu_ids = {n.node_id for n in cluster.gpu}
    assert used <= gpu_ids, "a GPU-asking task ran on the head or on the CPU-only worker"
    assert used == gpu_ids, "the work was not spread over both GPU workers"
    assert cluster.head not in used and cluster.cpu[0].node_id not in used
    # what the table reports came from those artifacts: every row scored, every model in the store
    assert set(res.dists) == {r.name for r in TABLE.rows}
    assert len(runner.artifacts.list("models")) == 3


def test_a_resource_no_node_has_is_an_error_not_a_hang(cluster, tmp_path):
    tier = _tier({"reference": {"num_cpus": 1, "num_gpus": 2}, "score": {"num_cpus": 1, "num_gpus": 2}})
    runner = _runner(tier, tmp_path, resource_wait_s=1.0)
    t0 = time.time()
    with pytest.raises(RuntimeError, match="no node of the Ray cluster could run a task"):
        runner.score_all([r for r in TABLE.rows if r.source == "zeros"])
    assert time.time() - t0 < 60


def test_init_ray_joins_the_cluster_named_by_ray_address(cluster, monkeypatch):
    from soundctm.distributed import init_ray

    ray.shutdown()
    monkeypatch.setenv("RAY_ADDRESS", cluster.c.address)
    try:
        assert init_ray(num_cpus=7)  # joined (num_cpus would make ray.init refuse a running cluster)
        assert ray.cluster_resources().get("CPU") == 3.0  # the cluster's workers, not a local session of 7
        assert any(n["NodeID"] == cluster.head for n in ray.nodes())
    finally:
        ray.shutdown()
        ray.init(address=cluster.c.address, log_to_driver=False)


def _killed_run(cluster, root: Path, after: int = 1) -> tuple[Runner, object, dict]:
    """Run the table; once `after` artifacts have landed, kill a worker node that is running a task."""
    runner = _runner(CPU_TIER, root)
    store = runner.artifacts
    out: dict = {}
    th = threading.Thread(target=lambda: out.setdefault("res", _try(runner.run, TABLE, out)), daemon=True)
    th.start()
    victim, deadline = None, time.time() + 240
    workers = {n.node_id: n for n in cluster.gpu + cluster.cpu}
    while victim is None and th.is_alive() and time.time() < deadline:
        recs = _records(store)
        if len(recs) >= after:
            busy = [(k, n) for k, n in _started(store) if k not in recs]
            for _key, prefix in busy:
                node = next((nid for nid in workers if nid.startswith(prefix)), None)
                if node is not None:
                    victim = node
                    # what has landed by now, and must survive as it is
                    landed = {}
                    for name in store.list() + store.list("models"):
                        p = store.fetch(name)
                        landed[name] = (_sha(p), p.stat().st_mtime_ns)
                    landed_recs = dict(recs)
                    cluster.c.remove_node(workers[node])
                    break
        time.sleep(0.05)
    assert victim is not None, f"no worker node was busy after {after} artifact(s) landed"
    th.join(timeout=300)
    assert not th.is_alive(), "the run did not finish after the node was killed"
    if "error" in out:
        raise out["error"]
    # replace the killed node, so that a repeated run has the same cluster shape
    cluster.gpu = [n for n in cluster.gpu if n.node_id != victim]
    cluster.cpu = [n for n in cluster.cpu if n.node_id != victim]
    cluster.cpu.append(cluster.c.add_node(num_cpus=1))
    cluster.c.wait_for_nodes()
    return runner, out["res"], {"victim": victim, "landed": landed, "landed_records": landed_recs}


def _try(fn, arg, out):
    try:
        return fn(arg)
    except BaseException as e:  # reported by the test thread
        out["error"] = e


@pytest.fixture(scope="module")
def calm(cluster, tmp_path_factory):
    """An undisturbed run of the CPU tier on the cluster: its numbers, per-item scores and weights."""
    runner = _runner(CPU_TIER, tmp_path_factory.mktemp("calm"))
    res = runner.run(TABLE)
    return SimpleNamespace(numbers=_numbers(res), weights=_weights(runner),
                           scores={r.name: runner.scores(r) for r in TABLE.rows})


def test_a_uri_store_gives_the_same_numbers_through_the_nodes_mirrors(cluster, calm, tmp_path):
    """file:// goes through pyarrow's filesystem as s3:// would: tasks write into their node's mirror
    and upload; the driver downloads what it reads."""
    runner = Runner(CPU_TIER, tmp_path / "cache", store=f"file://{tmp_path}/uri-store", log=lambda *a: None)
    assert runner.artifacts.mirrored
    res = runner.run(TABLE)
    assert _numbers(res) == calm.numbers
    fresh = open_store(runner.artifacts.uri, mirror=tmp_path / "fresh-mirror")  # what another machine sees
    names = fresh.list()
    assert {runner.scores_path(r).name for r in TABLE.rows} | {runner.reference_path().name} <= set(names)
    n_sampler = sum(r.source == "sampler" for r in TABLE.rows)
    assert sum(n.startswith("latents-") for n in names) == n_sampler
    assert len(fresh.list("models")) == 3
    assert sum(n.endswith(".json") for n in fresh.list("nodes")) == 3 + len(TABLE.rows) + 2


def test_killing_a_worker_node_loses_nothing_and_gives_the_same_numbers(cluster, calm, tmp_path):
    ref_numbers, ref_weights, ref_scores = calm.numbers, calm.weights, calm.scores

    repeats = int(os.environ.get("SOUNDCTM_CLUSTER_KILLS", "1"))
    identical, n_tasks = 0, 3 + len(TABLE.rows) + 2
    for k in range(repeats):
        # the first run kills after the first artifact (a training); repeats kill later, up to the scoring
        after = 1 + (3 * k) % (n_tasks - 3)
        runner, res, kill = _killed_run(cluster, tmp_path / f"killed{k}", after)
        store, victim = runner.artifacts, kill["victim"]
        # nothing that had landed was lost or redone
        for name, (sha, mtime) in kill["landed"].items():
            p = store.fetch(name)
            assert p is not None and _sha(p) == sha and p.stat().st_mtime_ns == mtime, name
        recs = _records(store)
        for key, rec in kill["landed_records"].items():
            assert recs[key]["node_id"] == rec["node_id"] and recs[key]["end"] == rec["end"], key
        # the killed node's unfinished task was run again on another node
        retried = [key for key, prefix in _started(store)
                   if victim.startswith(prefix) and recs[key]["node_id"] != victim]
        assert retried, "no task of the killed node was retried elsewhere"
        assert len(recs) == n_tasks  # trainings, rows, the reference, one timing
        # the same numbers as the undisturbed run: metrics (values and bootstrap samples), scores, weights
        assert _numbers(res) == ref_numbers
        got = {r.name: runner.scores(r) for r in TABLE.rows}
        for name, sc in ref_scores.items():
            for field in ("unit", "frames", "frame_counts", "probs", "clap"):
                a, b = getattr(sc, field), getattr(got[name], field)
                assert (a is None and b is None) or np.array_equal(a, b), (name, field)
        assert _weights(runner) == ref_weights
        identical += 1
        kinds = sorted({recs[key]["kind"] for key in retried})
        print(f"\n[cluster] run {k}: killed after {after} artifact(s) while it ran {kinds}; identical numbers")
    print(f"\n[cluster] {identical}/{repeats} killed-node runs completed with numbers identical to the undisturbed run")
