"""CSV import at 100k rows: the workspace's import, end to end, against a COPY of the same file.

The file is what a broker exports from Excel: `;`-separated, Spanish headers (nombre, teléfono, correo,
fuente, notas, etiquetas, comuna, presupuesto, dormitorios), one row in 50 invalid (a phone too short).
Ours, through the real reports API on a loopback port (an ADMIN's token):
- upload and preview: POST …/imports with the file (parsed, validated, each row stored with its errors);
- produce: POST …/start until every valid row is on the messages topic (the background job);
- pipeline: the landing and leads assets (landed, resolved, qualified, scored, staged), run in-process as
  the sensor-driven landing run would;
- attach: until the job has read each row's lead and put its tags and notes on it (status done).
Baseline: `COPY … FROM STDIN (FORMAT csv, HEADER, DELIMITER ';')` of the same bytes into a table of
text columns, in the same database and run. Sizes: LEADFLOW_BENCH_IMPORT_ROWS (default 100,000).
"""

from __future__ import annotations

import io
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx

from leadflow.config import Settings, Topics
from leadflow.db.connection import transaction

COMUNAS = ("Ñuñoa", "Providencia", "Las Condes", "La Reina", "Maipú", "Santiago")


def make_csv(rows: int) -> bytes:
    out = io.StringIO()
    out.write("nombre;teléfono;correo;fuente;notas;etiquetas;comuna;presupuesto;dormitorios\n")
    for i in range(rows):
        phone = "+56 9 1" if i % 50 == 49 else f"+56 9 {80000000 + i:08d}"
        out.write(f"Persona {i} Muñoz;{phone};persona{i}@correo.test;portal inmobiliario;"
                  f"Llamó el {1 + i % 28} de noviembre;feria,2025;{COMUNAS[i % len(COMUNAS)]};"
                  f"{3000 + (i % 40) * 100} UF;{1 + i % 4}\n")
    return out.getvalue().encode("utf-8")


def _copy_seconds(url: str, data: bytes) -> float:
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("""CREATE TEMP TABLE bench_import_copy (nombre text, telefono text, correo text, fuente text,
                       notas text, etiquetas text, comuna text, presupuesto text, dormitorios text)""")
        started = time.perf_counter()
        cur.copy_expert("COPY bench_import_copy FROM STDIN (FORMAT csv, HEADER, DELIMITER ';')", io.BytesIO(data))
        return time.perf_counter() - started


def _pipeline(settings: Settings, topics: Topics) -> None:
    """The landing run's assets, in this process (what the sensor-launched landing_job materializes)."""
    from dagster import materialize

    from assets.landing import landed_messages
    from assets.leads import lead_assignments, lead_qualifications, lead_scores, lead_stages, leads
    from pipelines.resources import KafkaResource, PostgresResource

    result = materialize([landed_messages, leads, lead_qualifications, lead_scores, lead_stages, lead_assignments],
                         resources={"postgres": PostgresResource(url=settings.database_url),
                                    "kafka": KafkaResource(bootstrap_servers=settings.kafka_bootstrap_servers,
                                                           topic_prefix=topics.prefix)})
    assert result.success


def bench_import(settings: Settings, rows: int) -> None:
    import os

    from leadflow.brokers import add_broker
    from leadflow.demo.run import BackgroundServer
    from leadflow.kafka import ensure_topics
    from leadflow.users import add_user
    from reports_api.app import create_app
    from reports_api.security import TokenSettings, issue_token
    from reports_api.workspace.publish import MessagePublisher

    os.environ["LEADFLOW_BCRYPT_ROUNDS"] = "4"
    os.environ["LEADFLOW_IMPORT_MAX_MB"] = "64"
    url = settings.database_url
    tag = uuid.uuid4().hex[:6]
    topics = Topics(f"imp{tag}")
    ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_partitions)
    broker = add_broker(url, f"bench-import-{tag}", name="Bench import", country="CL", timezone="America/Santiago")
    admin = add_user(url, f"admin-{tag}@import.test", "bench-password", role="ADMIN", broker_slug=broker.slug)
    tokens = TokenSettings(uuid.uuid4().hex * 2, timedelta(hours=2))
    headers = {"Authorization": f"Bearer {issue_token(tokens, admin)}"}
    data = make_csv(rows)
    copy_s = _copy_seconds(url, data)

    app = create_app(url, tokens, publisher=MessagePublisher(settings.kafka_bootstrap_servers, topics.messages))
    figures: dict[str, float] = {}
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, headers=headers, timeout=600) as http:
        base = f"/brokers/{broker.broker_id}/imports"
        started = time.perf_counter()
        preview = http.post(base, params={"filename": "leads.csv"}, content=data,
                            headers={"Content-Type": "text/csv"})
        assert preview.status_code == 201, preview.text
        figures["upload and preview"] = time.perf_counter() - started
        import_id = preview.json()["import_id"]

        def status() -> dict[str, Any]:
            answer = http.get(f"{base}/{import_id}")
            assert answer.status_code == 200, answer.text
            found: dict[str, Any] = answer.json()
            return found

        started = time.perf_counter()
        started_job = http.post(f"{base}/{import_id}/start")
        assert started_job.status_code == 202, started_job.text
        while (now := status())["status"] not in ("waiting", "done", "failed"):
            time.sleep(0.2)
        figures["produce onto Kafka"] = time.perf_counter() - started
        started = time.perf_counter()
        _pipeline(settings, topics)
        figures["pipeline (landing, leads, qualification, scores, stages)"] = time.perf_counter() - started
        started = time.perf_counter()
        while (now := status())["status"] not in ("done", "failed"):
            time.sleep(0.5)
        figures["attach tags and notes, outcomes"] = time.perf_counter() - started
    total = sum(figures.values())
    print(f"\n== CSV import: {rows:,} rows ({len(data) / 1e6:.1f} MB, ';', Spanish headers), through the reports API "
          "and the pipeline")
    print(f"baseline: COPY of the same file into a table of text columns   {copy_s:7.2f} s  "
          f"{rows / copy_s:9.0f} rows/s")
    for name, seconds in figures.items():
        print(f"{name:62s} {seconds:7.2f} s")
    print(f"import, end to end (status {now['status']}: {now['new_leads']:,} new, {now['merged_leads']:,} merged, "
          f"{now['rejected_rows']:,} rejected)   {total:7.2f} s  {rows / total:9.0f} rows/s")
    print(f"ratio import/COPY (rows/s): {copy_s / total:.4f}; upload and preview alone: "
          f"{copy_s / figures['upload and preview']:.3f} (what the person waits for before the job)")
