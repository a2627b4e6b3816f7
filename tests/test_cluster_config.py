"""cluster.yaml is checked the way `ray up` checks it: Ray's JSON schema, then Ray's own
preparation (defaults, node types, worker bounds) and validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[1] / "cluster.yaml"


def _load() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def test_cluster_yaml_matches_rays_schema():
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(_load(), schema)


def test_cluster_yaml_passes_rays_preparation_and_validation():
    prepared = prepare_config(_load())
    validate_config(prepared)
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head_cpu" and types["head_cpu"]["resources"] == {"CPU": 0}
    assert types["worker_gpu"]["min_workers"] == 0 and types["worker_gpu"]["max_workers"] >= 1


def test_cluster_opens_only_ssh_and_uses_token_auth_and_local_dashboard():
    config = _load()
    rules = config["provider"]["security_group"]["IpPermissions"]
    assert [(r["FromPort"], r["ToPort"]) for r in rules] == [(22, 22)]
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert starts.count("RAY_AUTH_MODE=token") >= 2 and "--dashboard-host=127.0.0.1" in starts
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert any("mlflow server" in c for c in config["head_setup_commands"])
    assert any("pip install" in c and "~/arnn" in c for c in config["setup_commands"])


def test_a_broken_cluster_config_is_caught():
    config = copy.deepcopy(_load())
    config["available_node_types"]["worker_gpu"]["min_workers"] = 100
    with pytest.raises(ValueError, match="max_workers"):
        validate_config(prepare_config(config))
    config = copy.deepcopy(_load())
    config["max_workers"] = "eight"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            config,
            json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text()),
        )
