"""`distributed.run_graph` on a local Ray session (2 CPUs): a node runs only after its dependencies, as soon
as they have finished (independent work does not wait for a stage), ready nodes go in list order, a node
whose arguments say "nothing to do" needs no task, and a failure drops only the nodes that depend on it.
Times are the tasks' own wall-clock stamps; the sleeps are long against Ray's scheduling latency."""

import shutil
import sys
import tempfile
import time

import pytest

ray = pytest.importorskip("ray")

from soundctm import distributed  # noqa: E402
from soundctm.distributed import TaskNode, run_graph  # noqa: E402

pytestmark = pytest.mark.ray

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the tasks below travel by value


def stamp(name, seconds, *inputs):
    """Sleep, then (name, start, end, inputs)."""
    t0 = time.time()
    time.sleep(seconds)
    return name, t0, time.time(), inputs


def boom(name):
    raise RuntimeError(f"node {name} fails")


def test_a_graph_with_nothing_to_do_starts_no_session():
    if ray.is_initialized():
        pytest.skip("a Ray session is connected in this process")
    calls = []
    out = run_graph([TaskNode(stamp, lambda: calls.append(0)), TaskNode(stamp, lambda: None, deps=(0,))],
                    on_result=lambda i, r: calls.append(i))
    assert out == [None, None] and calls == [0, 0, 1]  # (maker of 0, landed 0, landed 1)
    assert not ray.is_initialized()  # a warm cache: no Ray start per table


@pytest.fixture(scope="module")
def session():
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")
    mp.delenv("RAY_ADDRESS", raising=False)
    if ray.is_initialized():
        pytest.skip("a Ray session is connected in this process")
    # short: Unix socket paths are limited to 107 bytes (pytest's folders under a fresh TMPDIR are too long)
    temp = tempfile.mkdtemp(prefix="rg", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        yield
    finally:
        ray.shutdown()
        mp.undo()
        shutil.rmtree(temp, ignore_errors=True)


def test_dependencies_lazy_arguments_and_no_stage_barrier(session):
    seen = {}

    def landed(i, res):
        seen[i] = res

    nodes = [
        TaskNode(stamp, ("teacher", 2.0)),                                   # 0: slow
        TaskNode(stamp, ("other", 0.2)),                                     # 1: independent, quick
        TaskNode(stamp, lambda: ("student", 0.2, seen[0][0]), deps=(0,)),    # 2: reads what 0 returned
        TaskNode(stamp, lambda: ("after-other", 0.2, seen[1][0]), deps=(1,)),  # 3: only after 1
        TaskNode(stamp, lambda: None, deps=(2,)),                            # 4: nothing to do
        TaskNode(stamp, ("last", 0.0), deps=(3, 4)),                         # 5: after both chains
    ]
    out = run_graph(nodes, limit=2, on_result=landed)
    name = {i: r[0] for i, r in enumerate(out) if r is not None}
    assert name == {0: "teacher", 1: "other", 2: "student", 3: "after-other", 5: "last"} and out[4] is None
    start, end = {i: out[i][1] for i in name}, {i: out[i][2] for i in name}
    assert out[2][3] == ("teacher",) and out[3][3] == ("other",)  # the lazy arguments saw their deps' results
    assert start[2] >= end[0] and start[3] >= end[1] and start[5] >= max(end[3], end[2])
    # no stage barrier: the independent chain 1 -> 3 ran (and finished) while the slow node 0 still ran
    assert end[3] < end[0]
    assert set(seen) == set(range(6)) and seen[4] is None


def test_ready_nodes_go_in_list_order_within_the_limit(session):
    out = run_graph([TaskNode(stamp, (f"n{i}", 0.4)) for i in range(4)], limit=1)
    starts = [r[1] for r in out]
    assert starts == sorted(starts)  # one at a time, in list order
    assert all(b[1] >= a[2] for a, b in zip(out, out[1:]))


def test_a_failure_drops_only_its_dependents(session):
    landed = []
    nodes = [TaskNode(boom, ("a",)), TaskNode(stamp, ("b", 0.1)), TaskNode(stamp, ("child", 0.0), deps=(0,)),
             TaskNode(stamp, ("grandchild", 0.0), deps=(2,)), TaskNode(stamp, ("after-b", 0.0), deps=(1,))]
    with pytest.raises(RuntimeError, match="node a fails"):
        run_graph(nodes, limit=2, on_result=lambda i, r: landed.append((i, r[0])))
    assert sorted(landed) == [(1, "b"), (4, "after-b")]  # the failed node's dependents never ran


def test_dependencies_must_point_backwards():
    with pytest.raises(ValueError, match="only on nodes before it"):
        run_graph([TaskNode(stamp, ("x", 0.0), deps=(1,)), TaskNode(stamp, ("y", 0.0))])
    with pytest.raises(ValueError, match="only on nodes before it"):
        run_graph([TaskNode(stamp, ("x", 0.0), deps=(0,))])
    assert distributed.TaskNode(stamp).deps == ()


def test_argument_maker_failure_drops_dependents(session):
    landed = []

    def bad():
        raise KeyError("no teacher sha")

    nodes = [TaskNode(stamp, bad), TaskNode(stamp, ("child", 0.0), deps=(0,)), TaskNode(stamp, ("free", 0.0))]
    with pytest.raises(KeyError, match="no teacher sha"):
        run_graph(nodes, limit=2, on_result=lambda i, r: landed.append((i, r[0])))
    assert landed == [(2, "free")]


def test_run_tasks_is_the_graph_without_dependencies(session):
    got = []
    out = distributed.run_tasks(stamp, [("a", 0.0, 1), ("b", 0.0, 2)], limit=2,
                                on_result=lambda i, r: got.append(i))
    assert [(r[0], r[3]) for r in out] == [("a", (1,)), ("b", (2,))] and sorted(got) == [0, 1]
