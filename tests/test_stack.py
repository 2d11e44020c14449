"""`leadflow up` (make up): the whole stack comes up on demo data, answers, and stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from leadflow.config import Settings, with_database
from leadflow.services import postgres as embedded_postgres
from leadflow.services.ports import free_ports, wait_for_port


def test_make_up_serves_the_stack_and_stops_on_ctrl_c(settings: Settings, pg_admin_url: str, tmp_path: Path) -> None:
    name = f"leadflow_up_{uuid.uuid4().hex[:8]}"
    embedded_postgres.create_database(pg_admin_url, name)
    ports = dict(zip(("LEADFLOW_INGEST_PORT", "LEADFLOW_REPORTS_PORT", "LEADFLOW_DAGSTER_PORT"), free_ports(3),
                     strict=True))
    env = {**os.environ, **{k: str(v) for k, v in ports.items()},
           "LEADFLOW_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "dagster"),
           "LEADFLOW_DATABASE_URL": with_database(pg_admin_url, name),
           "LEADFLOW_KAFKA_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}", "PYTHONUNBUFFERED": "1",
           # Known here, so this test can write to the demo broker as Telegram would.
           "LEADFLOW_PROVIDENCIA_PROPIEDADES_TELEGRAM_SECRET_TOKEN": "up-test-secret-token"}
    leadflow = str(Path(sys.executable).with_name("leadflow"))
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen([leadflow, "up", "--contacts", "8"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "Leadflow is up" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "leadflow up did not come up in time"
            time.sleep(0.5)
        time.sleep(0.5)  # the logins are printed right after the banner
        printed = log.read_text(errors="replace")
        reports = f"http://127.0.0.1:{ports['LEADFLOW_REPORTS_PORT']}"
        assert f"{reports}/dashboard" in printed
        found = re.search(r"ADMIN\s+(admin@polanco-realty\.demo)\s+(\S+)", printed)
        assert found, printed[-2000:]
        token = httpx.post(f"{reports}/auth/token", json={"email": found[1], "password": found[2]}).json()
        brokers = httpx.get(f"{reports}/brokers", headers={"Authorization": f"Bearer {token['access_token']}"}).json()
        assert [b["slug"] for b in brokers] == ["polanco-realty"]
        assert httpx.get(f"http://127.0.0.1:{ports['LEADFLOW_INGEST_PORT']}/health").status_code == 200
        for live in (f"http://127.0.0.1:{ports['LEADFLOW_INGEST_PORT']}/live", f"{reports}/live"):
            assert httpx.get(live).json() == {"status": "ok"}, live  # the Kubernetes liveness probes
        assert httpx.get(f"http://127.0.0.1:{ports['LEADFLOW_DAGSTER_PORT']}/server_info").status_code == 200

        # The lead agent runs: a chat to the demo broker is answered, to the stand-in provider.
        inbox = re.search(r"replies shown at (http://127\.0\.0\.1:\d+)/inbox", printed)
        assert inbox, printed[-2000:]
        update = {"update_id": 777001, "message": {
            "message_id": 1, "date": int(time.time()), "text": "hola, busco depto en providencia",
            "from": {"id": 5550001, "is_bot": False, "first_name": "Ana"}, "chat": {"id": 5550001, "type": "private"}}}
        answered = httpx.post(f"http://127.0.0.1:{ports['LEADFLOW_INGEST_PORT']}/webhooks/providencia-propiedades/"
                              "telegram", json=update,
                              headers={"X-Telegram-Bot-Api-Secret-Token": "up-test-secret-token"})
        assert answered.status_code == 200, answered.text
        deadline = time.monotonic() + 30
        while "5550001" not in (page := httpx.get(f"{inbox[1]}/inbox").text) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "5550001" in page, page[-1500:]

        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        assert process.wait(timeout=60) == 0
        assert "stopped: ingest API, reports API, lead agent, Dagster" in log.read_text(errors="replace")
        for port in ports.values():
            assert not wait_for_port("127.0.0.1", port, 0.5), f"port {port} still answers"
    finally:
        if process.poll() is None:
            # Ctrl-C first: `leadflow up` stops the services it started (each in a session of its own, which a
            # SIGKILL of this group would leave running after a failed assertion).
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        embedded_postgres.drop_database(pg_admin_url, name)
