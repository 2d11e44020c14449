"""The workspace benchmark's baseline: a plain SELECT of the rows each workspace route shows, through the
reports API's own kind of pool (``ScopedPool``: same login role, scope and row security), as JSON.

Not part of the product: it exists so that bench/workspace.py can say what the workspace's queries,
checks and shaping cost over merely fetching the rows.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Response

from leadflow.config import Settings
from reports_api.scope import ScopedPool
from reports_api.security import Principal


def _rows(cur: Any) -> Response:
    names = [d[0] for d in cur.description]
    return Response(json.dumps([dict(zip(names, row, strict=True)) for row in cur.fetchall()], default=str),
                    media_type="application/json")


def create_app() -> FastAPI:
    import os

    settings = Settings.from_environment()
    pool = ScopedPool(settings.database_url, settings.reports_pool_size)
    broker = int(os.environ["LEADFLOW_BENCH_WS_BROKER"])
    who = Principal(user_id=int(os.environ["LEADFLOW_BENCH_WS_USER"]), email="bench", role="ADMIN", broker_id=broker)
    app = FastAPI()

    @app.get("/bare/inbox/{broker_id}")
    def inbox(broker_id: int, stage: str | None = None, temperature: str | None = None,
              q: str | None = None) -> Response:
        with pool.cursor(who, broker_id) as cur:
            if stage is not None:
                cur.execute("""SELECT l.lead_id, l.display_name, l.phone_e164, l.last_message_at, st.stage,
                                      s.temperature
                               FROM leadflow.leads l JOIN leadflow.lead_stages st USING (lead_id)
                               JOIN leadflow.lead_scores s USING (lead_id)
                               WHERE l.broker_id = %s AND st.stage = %s AND s.temperature = %s
                               ORDER BY l.last_message_at DESC LIMIT 50""", (broker_id, stage, temperature))
            elif q is not None:
                cur.execute("""SELECT lead_id, display_name, phone_e164, last_message_at FROM leadflow.leads
                               WHERE broker_id = %s AND display_name ILIKE %s
                               ORDER BY last_message_at DESC LIMIT 50""", (broker_id, f"%{q}%"))
            else:
                cur.execute("""SELECT lead_id, display_name, phone_e164, last_message_at FROM leadflow.leads
                               WHERE broker_id = %s ORDER BY last_message_at DESC LIMIT 50""", (broker_id,))
            return _rows(cur)

    @app.get("/bare/counts/{broker_id}")
    def counts(broker_id: int) -> Response:
        with pool.cursor(who, broker_id) as cur:
            cur.execute("""SELECT stage, count(*) FROM leadflow.lead_stages WHERE broker_id = %s GROUP BY stage""",
                        (broker_id,))
            return _rows(cur)

    @app.get("/bare/lead/{broker_id}/{lead_id}")
    def lead(broker_id: int, lead_id: int) -> Response:
        with pool.cursor(who, broker_id) as cur:
            cur.execute("""SELECT m.message_id, m.channel, m.direction, m.body, m.sent_at
                           FROM leadflow.message_leads ml JOIN leadflow.raw_messages m USING (message_id)
                           WHERE ml.lead_id = %s ORDER BY ml.message_id DESC LIMIT 500""", (lead_id,))
            return _rows(cur)

    return app
