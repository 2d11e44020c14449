"""Webhook over real HTTP → Kafka → sensor-launched landing run → PostgreSQL → dbt staging row."""

from __future__ import annotations

import asyncio

from dagster import DagsterInstance

from ingest_api.app import create_app
from leadflow.config import Settings
from leadflow.db.connection import connect
from leadflow.demo.run import BackgroundServer
from leadflow.demo.webhooks import send_all
from tests import payloads
from tests.conftest import BrokerFactory


def test_a_whatsapp_message_reaches_the_staging_model(settings: Settings, make_broker: BrokerFactory) -> None:
    from pipelines.definitions import defs
    from pipelines.inprocess import QUIET, drain

    broker = make_broker()
    with BackgroundServer(create_app(settings, broker_reload_interval_s=0)) as server:
        codes = asyncio.run(send_all(server.url, [(broker, "whatsapp", payloads.whatsapp_text("wamid.E2E-1")),
                                                  (broker, "vapi", payloads.vapi_end_of_call("call-e2e"))]))
    assert codes == {200: 2}

    instance = DagsterInstance.ephemeral()
    outcomes = drain(defs, instance)
    assert any(o.run_keys for o in outcomes) and not any(o.failed for o in outcomes)
    assert outcomes[-1].skip_reason is not None  # drained: nothing left past the stored offsets
    dbt_run = defs.resolve_job_def("analytics_job").execute_in_process(instance=instance, run_config=QUIET)
    assert dbt_run.success

    conn = connect(settings.database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT channel, provider_message_id, contact_phone_e164, message_text "
                    "FROM staging.stg_leadflow__messages WHERE broker_id = %s ORDER BY sent_at, provider_message_id",
                    (broker.broker_id,))
        rows = cur.fetchall()
    conn.close()
    whatsapp = [r for r in rows if r[0] == "whatsapp"]
    calls = [r for r in rows if r[0] == "vapi"]
    assert whatsapp == [
        ("whatsapp", "wamid.E2E-1", "+56987654321", "Tengo crédito preaprobado, busco casa en La Reina")]
    assert [r[1] for r in calls] == ["call-e2e:1", "call-e2e:2", "call-e2e:3", "call-e2e:4"]
    assert calls[1][3] == "Hola, quiero arrendar un depto de tres dormitorios en Providencia."
