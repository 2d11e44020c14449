"""`leadflow services up|status|down` on a fresh state directory: embedded PostgreSQL and Kafka."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from leadflow.config import ConfigurationError
from leadflow.services import seaweedfs


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADFLOW_", "DAGSTER_HOME"))}
    env["LEADFLOW_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "leadflow.cli", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def test_embedded_services_start_once_report_status_and_stop(tmp_path: Path) -> None:
    home = tmp_path / "state"
    try:
        first = cli("services", "up", home=home)
        assert first.returncode == 0, first.stderr
        assert "postgres: embedded, started" in first.stdout and "kafka: embedded, started" in first.stdout
        again = cli("services", "up", home=home)
        assert "already running" in again.stdout
        status = cli("services", "status", home=home)
        assert status.stdout.count(": up") == 2, status.stdout
        brokers = cli("brokers", "add", "demo-one", "--name", "Demo", "--country", "MX", "--timezone",
                      "America/Mexico_City", home=home)
        assert brokers.returncode == 0, brokers.stderr
        assert (home / "dagster" / "dagster.yaml").exists()
    finally:
        down = cli("services", "down", home=home)
    assert down.returncode == 0, down.stderr
    assert "not started" in cli("services", "status", home=home).stdout


def test_a_restart_takes_the_same_ports_so_running_clients_find_the_services_again(tmp_path: Path) -> None:
    import json
    import signal
    import time

    home = tmp_path / "state"
    state = home / "services.json"
    try:
        assert cli("services", "up", home=home).returncode == 0
        first = json.loads(state.read_text())
        # A crash of PostgreSQL (its postmaster killed): `up` starts it again where clients look for it.
        postmaster = int((Path(first["postgres_data_dir"]) / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while cli("services", "status", home=home).stdout.count(": up") == 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        again = cli("services", "up", home=home)
        assert again.returncode == 0, again.stderr
        assert "postgres: embedded, started" in again.stdout
        assert json.loads(state.read_text())["database_url"] == first["database_url"]
        # Stopped and started by hand: both come back on their ports.
        assert cli("services", "down", home=home).returncode == 0
        assert cli("services", "up", home=home).returncode == 0
        third = json.loads(state.read_text())
        assert (third["database_url"], third["kafka_bootstrap_servers"]) == \
            (first["database_url"], first["kafka_bootstrap_servers"])
    finally:
        assert cli("services", "down", home=home).returncode == 0


def test_a_seaweedfs_that_cannot_start_says_why_in_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A port taken between choosing and binding it (the race any free-port choice has): weed exits, and the
    error carries its reason, not only where its log is."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        chosen = seaweedfs.free_ports
        monkeypatch.setattr(seaweedfs, "free_ports", lambda n: [port, *chosen(n - 1)] if n == 8 else chosen(n))
        with pytest.raises(ConfigurationError, match=rf"SeaweedFS exited .*: .*port {port}.* is not available") as err:
            seaweedfs.start(tmp_path / "seaweedfs", timeout=30)
    assert str(tmp_path / "seaweedfs.log") in str(err.value)
