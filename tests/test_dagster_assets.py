"""The landing asset (with its checks) and the dbt models, materialised in-process."""

from __future__ import annotations

from dagster import AssetKey, materialize

from leadflow.config import Settings, Topics
from leadflow.db.connection import connect
from pipelines.resources import KafkaResource, PostgresResource
from tests.conftest import BrokerFactory
from tests.test_landing import produce_messages


def resources(settings: Settings, topics: Topics) -> dict[str, object]:
    from pipelines.definitions import defs

    assert defs.resources is not None
    return {
        "postgres": PostgresResource(url=settings.database_url),
        "kafka": KafkaResource(bootstrap_servers=settings.kafka_bootstrap_servers, topic_prefix=topics.prefix),
        "dbt": defs.resources["dbt"],
    }


def test_landing_asset_lands_and_its_checks_pass(settings: Settings, fresh_topics: Topics,
                                                 make_broker: BrokerFactory) -> None:
    from assets.landing import landed_messages, landed_rows_have_a_broker, no_duplicate_provider_message_ids

    produce_messages(settings, fresh_topics, make_broker(), 40, duplicate_every=4)
    result = materialize([landed_messages, landed_rows_have_a_broker, no_duplicate_provider_message_ids],
                         resources=resources(settings, fresh_topics))
    assert result.success
    [materialization] = result.asset_materializations_for_node("landed_messages")
    assert materialization.metadata["messages_landed"].value == 40
    assert materialization.metadata["duplicates_absorbed"].value == 10
    checks = result.get_asset_check_evaluations()
    assert {c.check_name for c in checks} == {"landed_rows_have_a_broker", "no_duplicate_provider_message_ids"}
    assert all(c.passed for c in checks)


def test_dbt_build_materialises_staging_models_over_landed_rows(settings: Settings, fresh_topics: Topics,
                                                                make_broker: BrokerFactory) -> None:
    from assets.analytics import leadflow_dbt_models
    from assets.landing import landed_messages

    broker = make_broker()
    produce_messages(settings, fresh_topics, broker, 12)
    result = materialize([landed_messages, leadflow_dbt_models], resources=resources(settings, fresh_topics))
    assert result.success
    keys = {m.asset_key for m in result.get_asset_materialization_events() if m.asset_key}
    assert AssetKey(["staging", "stg_leadflow__messages"]) in keys
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)  # dbt tests run as asset checks
    conn = connect(settings.database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), min(contact_phone_e164) FROM staging.stg_leadflow__messages WHERE broker_id = %s",
                    (broker.broker_id,))
        count, _ = cur.fetchone() or (0, None)
    conn.close()
    assert count == 12
