"""cluster.yaml is checked the way `ray up` checks it: Ray's JSON schema, then Ray's own
preparation (defaults, node types, worker bounds) and validation."""

from __future__ import annotations

import copy
import json
import re
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


def test_head_mlflow_server_runs_on_postgresql_installed_and_started_in_head_setup():
    config = _load()
    setup = config["head_setup_commands"]
    servers = [i for i, c in enumerate(setup) if "mlflow server" in c]
    assert len(servers) == 1, "one command starts the head's MLflow server"
    server = setup[servers[0]]
    # The backend is PostgreSQL's `mlflow` database on the head's private address; no SQLite.
    # The URI names psycopg2, the driver installed: SQLAlchemy 2.1 reads a bare postgresql://
    # as psycopg 3.
    assert re.search(
        r"--backend-store-uri\s+postgresql\+psycopg2://[^\s@:]+@\$HEAD_IP/mlflow\s", server
    )
    assert "sqlite" not in " ".join(setup + config["head_start_ray_commands"]).lower()
    # Artifacts stay where they were; workers still reach the server on the private address.
    assert "--artifacts-destination s3://" in server
    assert re.search(r"--host\s+\$HEAD_IP\s+--port\s+5000\b", server)
    assert "HEAD_IP=$(hostname -I" in server

    def first(pattern: str) -> int:
        hits = [i for i, c in enumerate(setup) if re.search(pattern, c)]
        assert hits, f"no head setup command matches {pattern!r}"
        return hits[0]

    # Installed, given a role and database, bound and (re)started before the server starts.
    steps = [
        first(r"apt-get install\b.*\bpostgresql\b"),
        first(r"arnn-venv/bin/pip install\b.*\bpsycopg2-binary\b"),
        first(r"CREATE ROLE mlflow\b"),
        first(r"createdb\b.*\bmlflow\b"),
        first(r"systemctl restart postgresql\b"),
    ]
    assert all(step < servers[0] for step in steps)
    # PostgreSQL listens on localhost and the private address only, never on every address.
    listen = setup[first(r"listen_addresses")]
    assert "listen_addresses = 'localhost,$HEAD_IP'" in listen
    assert "0.0.0.0" not in listen and "'*'" not in listen
    hba = [ln for ln in " ".join(setup).split(";") if "tee -a" in ln and "$HBA" in ln]
    assert hba and all("host mlflow mlflow $HEAD_IP/32 scram-sha-256" in ln for ln in hba)
    # A pool larger than a worker's 40 request threads (log_batch takes two connections, and
    # the default 5 + 10 deadlocks), and room for 4 workers' pools in max_connections.
    size = int(re.search(r"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=(\d+)", server).group(1))
    overflow = int(re.search(r"MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=(\d+)", server).group(1))
    workers = int(re.search(r"--workers\s+(\d+)", server).group(1))
    most = int(re.search(r"max_connections = (\d+)", " ".join(setup)).group(1))
    assert size + overflow > 40 and workers * (size + overflow) < most


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
