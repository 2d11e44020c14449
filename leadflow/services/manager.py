"""`leadflow services up|down|status`: start what is not configured, remember where it listens.

A service given by environment variable is only checked, never started. Otherwise the embedded
one is started (or found running) and its address saved in ``$LEADFLOW_HOME/services.json``.

The embedded Kafka keeps its log in SeaweedFS (``LEADFLOW_KAFKA_STORAGE=s3``, the default) or in
memory; SeaweedFS is started first and must answer before Tansu starts against it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from leadflow.config import ConfigurationError, Settings, export_environment, read_state, state_file
from leadflow.db.connection import connect
from leadflow.db.migrate import upgrade
from leadflow.kafka import ensure_topics, ping
from leadflow.services import kafka as embedded_kafka
from leadflow.services import postgres as embedded_postgres
from leadflow.services import seaweedfs
from leadflow.services.ports import free_port, pid_alive, stop_process, wait_for_port

DAGSTER_YAML = Path(__file__).with_name("dagster.yaml")


def _write_state(state: dict[str, Any]) -> None:
    state_file().parent.mkdir(parents=True, exist_ok=True)
    tmp = state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_file())


def _postgres_answers(url: str) -> bool:
    try:
        connect(url).close()
        return True
    except ConfigurationError:
        return False


def dagster_home() -> Path:
    return Settings.from_environment().dagster_instance_dir


def up(log: Any = print) -> dict[str, Any]:
    """Bring both services to a usable state, migrate the schema, create the topics."""
    configured = Settings.from_environment()
    state = read_state()
    if configured.database_url:
        connect(configured.database_url).close()
        log(f"postgres: configured by LEADFLOW_DATABASE_URL ({_safe(configured.database_url)})")
    elif state.get("database_url") and _postgres_answers(state["database_url"]):
        log(f"postgres: embedded, already running at {state['database_url']}")
    else:
        data_dir = configured.state_dir / "postgres"
        state["database_url"] = embedded_postgres.start(data_dir, _postgres_port(configured, state))
        state["postgres_data_dir"] = str(data_dir)
        log(f"postgres: embedded, started at {state['database_url']}")
    if configured.kafka_bootstrap_servers:
        ping(configured.kafka_bootstrap_servers)
        log(f"kafka: configured by LEADFLOW_KAFKA_BOOTSTRAP_SERVERS ({configured.kafka_bootstrap_servers})")
    elif state.get("kafka_bootstrap_servers") and pid_alive(state.get("kafka_pid")):
        running = state.get("kafka_storage", "memory")
        log(f"kafka: embedded, already running at {state['kafka_bootstrap_servers']} (storage {running})")
        if running != configured.kafka_storage:
            log(f"kafka: LEADFLOW_KAFKA_STORAGE={configured.kafka_storage} applies after `leadflow services down`")
    else:
        _start_kafka(configured, state, log)
    _write_state(state)
    # The caller (CLI, demo, make up) goes on to run Dagster and dbt in this process and its children.
    settings = export_environment(configured.resolved())
    upgrade(settings.database_url)
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all(), settings.kafka_partitions)
    home = settings.dagster_instance_dir
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML.read_text())
    return state


def _kafka_port(configured: Settings, state: dict[str, Any]) -> int:
    """The configured port, else the last one if still free: clients that outlived a broker restart find it again."""
    if configured.embedded_kafka_port:
        return configured.embedded_kafka_port
    return _last_port(_kafka_port_of(state.get("kafka_bootstrap_servers")), state.get("last_kafka_port"))


def _postgres_port(configured: Settings, state: dict[str, Any]) -> int:
    """As for Kafka: an ingest API or agent still running keeps its URL, and finds the server there again
    (on a new port it answered 503 or waited until restarted)."""
    if configured.embedded_pg_port:
        return configured.embedded_pg_port
    return _last_port(urlsplit(str(state.get("database_url", ""))).port, state.get("last_postgres_port"))


def _kafka_port_of(bootstrap: str | None) -> int | None:
    port = (bootstrap or "").rpartition(":")[2]
    return int(port) if port.isdigit() else None


def _last_port(*candidates: int | None) -> int:
    for port in candidates:
        if port and not wait_for_port("127.0.0.1", port, timeout=0.1):
            return port
    return free_port()


def _start_kafka(configured: Settings, state: dict[str, Any], log: Any) -> None:
    port = _kafka_port(configured, state)
    if configured.kafka_storage == "memory":
        address, cluster, pid = embedded_kafka.start(configured.state_dir, port)
        for key in ("seaweedfs_pid", "seaweedfs_endpoint", "seaweedfs_dir"):
            state.pop(key, None)
        state.update(kafka_bootstrap_servers=address, kafka_cluster_id=cluster, kafka_pid=pid, kafka_storage="memory")
        log(f"kafka: embedded, started at {address} (cluster {cluster}, storage memory: lost at stop)")
        return
    data_dir = configured.state_dir / "seaweedfs"
    endpoint = state.get("seaweedfs_endpoint")
    if endpoint and pid_alive(state.get("seaweedfs_pid")) and seaweedfs.answers(endpoint):
        store = seaweedfs.store_of(endpoint, int(state["seaweedfs_pid"]), data_dir)
        log(f"seaweedfs: already running, S3 at {endpoint}")
    else:
        store = seaweedfs.start(data_dir)
        log(f"seaweedfs: started, S3 at {store.endpoint} (data in {data_dir})")
    state.update(seaweedfs_pid=store.pid, seaweedfs_endpoint=store.endpoint, seaweedfs_dir=str(data_dir))
    # Saved before Tansu starts: if it fails, `services down` still finds SeaweedFS to stop.
    _write_state(state)
    cluster = embedded_kafka.stable_cluster_id(data_dir)
    address, cluster, pid = embedded_kafka.start(configured.state_dir, port, store, cluster)
    state.update(kafka_bootstrap_servers=address, kafka_cluster_id=cluster, kafka_pid=pid, kafka_storage="s3")
    log(f"kafka: embedded, started at {address} (cluster {cluster}, storage s3 in SeaweedFS: kept across restarts)")


def down(log: Any = print) -> None:
    state = read_state()
    storage = state.get("kafka_storage", "memory")
    if state.get("kafka_pid") and pid_alive(state["kafka_pid"]):
        # Stopped before its storage: SeaweedFS must outlive the broker's last writes.
        stop_process(state["kafka_pid"], 10)
        kept = f"its log is kept in {state.get('seaweedfs_dir')}" if storage == "s3" else "its memory-only log is gone"
        log(f"kafka: embedded broker (pid {state['kafka_pid']}) stopped; {kept}")
    if pid_alive(state.get("seaweedfs_pid")):
        seaweedfs.stop(state["seaweedfs_pid"])
        log(f"seaweedfs: stopped (data kept in {state.get('seaweedfs_dir')})")
    if state.get("postgres_data_dir"):
        embedded_postgres.stop(Path(state["postgres_data_dir"]))
        log("postgres: embedded server stopped (data kept in the state directory)")
    # The ports are remembered: the next `up` takes them again when free (clients keep their addresses).
    if state.get("database_url"):
        state["last_postgres_port"] = urlsplit(state["database_url"]).port
    if state.get("kafka_bootstrap_servers"):
        state["last_kafka_port"] = _kafka_port_of(state["kafka_bootstrap_servers"])
    for key in ("database_url", "kafka_bootstrap_servers", "kafka_cluster_id", "kafka_pid", "kafka_storage",
                "seaweedfs_pid", "seaweedfs_endpoint"):
        state.pop(key, None)
    _write_state(state)


def embedded_running() -> bool:
    """Whether an embedded PostgreSQL or Kafka of this state directory is already up."""
    state = read_state()
    return bool(state.get("database_url") and _postgres_answers(state["database_url"])) or \
        pid_alive(state.get("kafka_pid")) or pid_alive(state.get("seaweedfs_pid"))


def status() -> dict[str, str]:
    configured = Settings.from_environment()
    state = read_state()
    report: dict[str, str] = {}
    db_url = configured.database_url or state.get("database_url")
    if db_url:
        origin = "configured" if configured.database_url else "embedded"
        report["postgres"] = f"{origin} {_safe(db_url)}: {'up' if _postgres_answers(db_url) else 'DOWN'}"
    else:
        report["postgres"] = "not started (run `leadflow services up`)"
    bootstrap = configured.kafka_bootstrap_servers or state.get("kafka_bootstrap_servers")
    if bootstrap:
        origin = "configured" if configured.kafka_bootstrap_servers else "embedded"
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        alive = wait_for_port(host, int(port), timeout=1)
        report["kafka"] = f"{origin} {bootstrap}: {'up' if alive else 'DOWN'}"
        if not configured.kafka_bootstrap_servers:
            report["kafka"] += f"; {_storage_status(state)}"
    else:
        report["kafka"] = "not started (run `leadflow services up`)"
    return report


def _storage_status(state: dict[str, Any]) -> str:
    cluster = state.get("kafka_cluster_id", "unknown")
    if state.get("kafka_storage", "memory") == "memory":
        return f"storage memory (lost at stop; cluster {cluster})"
    endpoint = state.get("seaweedfs_endpoint", "")
    answering = "answering" if endpoint and seaweedfs.answers(endpoint) else "NOT ANSWERING"
    return f"storage s3 (SeaweedFS at {endpoint} {answering}, data in {state.get('seaweedfs_dir')}; cluster {cluster})"


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()
    return url
