"""cluster.yaml is a valid Ray cluster-launcher file (checked offline by Ray's own validator)."""

import copy
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]


def _check(cfg):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cfg)))


def _load():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_is_valid_and_ships_and_installs_the_repo():
    cfg = _load()
    _check(cfg)
    gpu_nodes = [n for n in cfg["available_node_types"].values() if n["resources"].get("GPU", 0) > 0]
    assert gpu_nodes and cfg["head_node_type"] in cfg["available_node_types"]
    assert "." in cfg["file_mounts"].values()
    setup = cfg["setup_commands"]
    i_torch = next(i for i, c in enumerate(setup) if c.startswith("pip install torch"))
    i_pkg = next(i for i, c in enumerate(setup) if "pip install -e" in c and "[ray]" in c)
    assert i_torch < i_pkg


@pytest.mark.parametrize("break_it", ["misspelt_key", "unknown_head_type", "wrong_type"])
def test_validator_rejects_broken_variants(break_it):
    cfg = _load()
    if break_it == "misspelt_key":
        cfg["setup_comands"] = cfg.pop("setup_commands")
    elif break_it == "unknown_head_type":
        cfg["head_node_type"] = "no_such_node"
    else:
        cfg["max_workers"] = "four"
    import jsonschema

    with pytest.raises((ValueError, jsonschema.ValidationError)):
        _check(cfg)


def test_cluster_yaml_head_only_coordinates_and_the_workers_fit_the_paper_tier_tasks():
    from soundctm.experiments.tier import PAPER

    cfg = _load()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]["resources"]
    assert head.get("CPU") == 0 and head.get("GPU", 0) == 0  # no task can be scheduled on the head
    workers = [t["resources"] for name, t in types.items() if name != cfg["head_node_type"]]
    for kind in ("train", "score", "reference"):
        need = PAPER.task_resources(kind)
        assert need.get("num_gpus", 0) >= 1
        assert any(w.get("GPU", 0) >= need["num_gpus"] and w.get("CPU", 0) >= need.get("num_cpus", 1)
                   for w in workers), kind
    # every node gets the shared store (the driver reads SOUNDCTM_STORE as the --store default)
    assert any("SOUNDCTM_STORE=" in c for c in cfg["setup_commands"])
