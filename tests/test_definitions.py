"""The code location analysts open in the Dagster UI: assets, lineage, checks, jobs, sensor."""

from __future__ import annotations

from dagster import AssetKey, ScheduleDefinition


def test_definitions_wire_landing_into_dbt_with_the_sensor_and_jobs() -> None:
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    staging = AssetKey(["staging", "stg_leadflow__messages"])
    assert AssetKey("landed_messages") in graph.get(staging).parent_keys
    assert {s.name for s in defs.sensors or []} == {"kafka_landing_sensor", "campaign_trigger_sensor"}
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"landing_job", "analytics_job"}
    checks = {key.name for key in graph.asset_check_keys}
    assert {"landed_rows_have_a_broker", "no_duplicate_provider_message_ids"} <= checks
    assert any(name.startswith("unique_stg_leadflow__messages") for name in checks)  # dbt tests as checks


def test_the_campaign_batch_is_scheduled_and_its_assets_follow_the_leads() -> None:
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    assert AssetKey("lead_stages") in graph.get(AssetKey("lead_consent")).parent_keys
    assert AssetKey("campaign_sends") in graph.get(AssetKey("outbound_dispatch")).parent_keys
    [schedule] = defs.schedules or []
    assert isinstance(schedule, ScheduleDefinition)
    assert (schedule.name, schedule.job_name, schedule.cron_schedule) == ("campaign_batch_schedule", "campaign_job",
                                                                          "5 * * * *")
