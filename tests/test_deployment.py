"""docker-compose.yml cannot run here (no Docker engine): check it parses and names what the code expects."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def env_vars_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for folder in ("leadflow", "ingest_api", "reports_api", "sensors", "assets", "pipelines"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r'"(LEADFLOW_[A-Z_]+)"', path.read_text()))
    return names


def test_compose_has_the_production_services() -> None:
    assert set(compose()["services"]) >= {"kafka", "postgres", "ingest-api", "reports-api", "dagster-webserver",
                                          "dagster-daemon"}


def test_kafka_runs_in_kraft_mode_without_zookeeper() -> None:
    services = compose()["services"]
    assert "zookeeper" not in services
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]


def test_app_services_get_the_variables_the_code_requires() -> None:
    services = compose()["services"]
    required = {"LEADFLOW_DATABASE_URL", "LEADFLOW_KAFKA_BOOTSTRAP_SERVERS", "LEADFLOW_DAGSTER_DATABASE_URL",
                "DAGSTER_HOME"}
    for name in ("migrate", "ingest-api", "reports-api", "dagster-webserver", "dagster-daemon"):
        assert required <= set(services[name]["environment"]), name
    assert "LEADFLOW_REPORTS_JWT_SECRET" in services["reports-api"]["environment"]


def test_every_leadflow_variable_in_compose_is_one_the_code_reads() -> None:
    for service in ("ingest-api", "reports-api", "dagster-daemon"):
        env = compose()["services"][service]["environment"]
        named = {k for k in env if k.startswith("LEADFLOW_")}
        assert named <= env_vars_read_by_the_code(), service


def test_bootstrap_servers_point_at_the_kafka_listener() -> None:
    services = compose()["services"]
    bootstrap = services["ingest-api"]["environment"]["LEADFLOW_KAFKA_BOOTSTRAP_SERVERS"]
    assert f"PLAINTEXT://{bootstrap}" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_dagster_processes_load_the_workspace_and_share_the_instance_config() -> None:
    services = compose()["services"]
    assert "workspace.yaml" in services["dagster-webserver"]["command"]
    assert "workspace.yaml" in services["dagster-daemon"]["command"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "leadflow/services/dagster.yaml" in dockerfile
    instance = yaml.safe_load((ROOT / "leadflow/services/dagster.yaml").read_text())
    assert instance["storage"]["postgres"]["postgres_url"]["env"] == "LEADFLOW_DAGSTER_DATABASE_URL"


def test_no_secret_is_written_into_compose() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${LEADFLOW_POSTGRES_PASSWORD:?" in text
    assert not re.search(r"PASSWORD:\s*['\"]?\w", text.replace("${LEADFLOW_POSTGRES_PASSWORD", ""))


def test_workspace_loads_the_definitions_module() -> None:
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    [location] = workspace["load_from"]
    assert location["python_module"] == {"module_name": "pipelines.definitions", "attribute": "defs",
                                         "location_name": "leadflow"}
