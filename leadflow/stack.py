"""`make up`: the whole local stack on the demo data until Ctrl-C.

Embedded PostgreSQL and Kafka (or the configured ones), the demo data (generated once), the ingest
API, the reports API with the dashboard, and `dagster dev` (webserver and daemon, so sensors and
the campaign schedule tick). Children run in their own process groups; Ctrl-C or SIGTERM stops
them all, then the embedded services this command started.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from leadflow.brokers import list_brokers
from leadflow.config import PROVIDER_URLS, Settings, child_process_environment
from leadflow.demo.provider import StandInProvider
from leadflow.services.ports import wait_for_port
from leadflow.users import add_user

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Ports:
    ingest: int
    reports: int
    dagster: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Ports:
        return cls(settings.ingest_port, settings.reports_port, settings.dagster_port)


def demo_logins(settings: Settings) -> list[tuple[str, str, str]]:
    """An ADMIN per demo broker and a SUPERADMIN, with fresh random passwords (email, password, role)."""
    from leadflow.demo.run import DEMO_BROKERS

    password = secrets.token_urlsafe(12)
    logins = [("superadmin@leadflow.demo", password, "SUPERADMIN")]
    add_user(settings.database_url, logins[0][0], password, role="SUPERADMIN", display_name="Demo superadmin")
    for slug, *_ in DEMO_BROKERS:
        email = f"admin@{slug}.demo"
        add_user(settings.database_url, email, password, role="ADMIN", broker_slug=slug, display_name=f"Admin {slug}")
        logins.append((email, password, "ADMIN"))
    return logins


def run_stack(settings: Settings, ports: Ports, contacts_per_broker: int = 300) -> int:
    from leadflow.demo.run import DEMO_BROKERS, register_demo_brokers, run_demo

    demo_slugs = {slug for slug, *_ in DEMO_BROKERS}
    if not demo_slugs <= {b.slug for b in list_brokers(settings.database_url)}:
        run_demo(settings, contacts_per_broker=contacts_per_broker)
    # The demo brokers' channel credentials are stored in the database (sealed under the local master key),
    # where the ingest API, the agent and the dispatcher read them.
    register_demo_brokers(settings.database_url)
    logins = demo_logins(settings)
    env = {**child_process_environment(settings),
           "LEADFLOW_REPORTS_JWT_SECRET": settings.reports_jwt_secret or secrets.token_urlsafe(48)}
    # The lead agent answers the demo brokers' chats; with no provider configured, its replies go to a
    # stand-in Telegram/WhatsApp on loopback whose /inbox page shows them.
    stand_in = None
    if (settings.provider_url("LEADFLOW_TELEGRAM_API_URL"), settings.provider_url("LEADFLOW_WHATSAPP_API_URL")) == (
            PROVIDER_URLS["LEADFLOW_TELEGRAM_API_URL"], PROVIDER_URLS["LEADFLOW_WHATSAPP_API_URL"]):
        stand_in = StandInProvider().start()
        env.update({"LEADFLOW_TELEGRAM_API_URL": stand_in.url, "LEADFLOW_WHATSAPP_API_URL": stand_in.url})
    leadflow = str(Path(sys.executable).with_name("leadflow"))
    commands = {
        "ingest API": [leadflow, "ingest-api", "--port", str(ports.ingest)],
        "reports API": [leadflow, "reports-api", "--port", str(ports.reports)],
        "lead agent": [leadflow, "agent", "run"],
        "Dagster": [leadflow, "dagster", "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1",
                    "-p", str(ports.dagster)],
    }
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for name, command in commands.items():
            children[name] = subprocess.Popen(command, env=env, cwd=REPO, start_new_session=True)
        for name, port in (("ingest API", ports.ingest), ("reports API", ports.reports),
                           ("Dagster", ports.dagster)):
            if not _wait(port, children[name], lambda: stopping):
                if stopping:
                    return 0
                print(f"the {name} did not start (exit code {children[name].poll()}); stopping", file=sys.stderr)
                return 1
        base = "http://127.0.0.1"
        stand_in_line = f"; replies shown at {stand_in.url}/inbox" if stand_in else ""
        print(f"""
Leadflow is up on the demo data (Ctrl-C stops everything):
  dashboard      {base}:{ports.reports}/dashboard
  reports API    {base}:{ports.reports}/docs
  dbt docs       {base}:{ports.reports}/dbt-docs/   (written by the first analytics run)
  ingest API     {base}:{ports.ingest}/docs
  lead agent     answers the demo brokers' Telegram and WhatsApp chats{stand_in_line}
  Dagster UI     {base}:{ports.dagster}   (sensors and the campaign schedule are running)
demo logins (passwords are new at every start):""")
        for email, password, role in logins:
            print(f"  {role:10s} {email:40s} {password}")
        sys.stdout.flush()
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"the {name} exited with code {child.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        _terminate(children)
        if stand_in is not None:
            stand_in.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(port: int, child: subprocess.Popen[bytes], stopping: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if child.poll() is not None or stopping():
            return False
        if wait_for_port("127.0.0.1", port, 0.5):
            return True
    return False


def _terminate(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for child in children.values():
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    print("stopped: ingest API, reports API, lead agent, Dagster")
