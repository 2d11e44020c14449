"""The code location analysts open in the Dagster UI: assets, lineage, checks, jobs, sensor."""

from __future__ import annotations

from dagster import AssetKey, DefaultSensorStatus, ScheduleDefinition


def test_definitions_wire_landing_into_dbt_with_the_sensor_and_jobs() -> None:
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    staging = AssetKey(["staging", "stg_leadflow__messages"])
    assert AssetKey("landed_messages") in graph.get(staging).parent_keys
    sensors = {s.name: s for s in defs.sensors or []}
    assert set(sensors) == {"kafka_landing_sensor", "campaign_trigger_sensor", "analytics_refresh_sensor"}
    # `make up` runs the daemon: sensors tick without anyone switching them on in the UI.
    assert all(s.default_status == DefaultSensorStatus.RUNNING for s in sensors.values())
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"landing_job", "analytics_job"}
    checks = {key.name for key in graph.asset_check_keys}
    assert {"landed_rows_have_a_broker", "no_duplicate_provider_message_ids"} <= checks
    assert any(name.startswith("not_null_stg_leadflow__messages") for name in checks)  # dbt tests as checks


def test_the_campaign_batch_is_scheduled_and_its_assets_follow_the_leads() -> None:
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    assert AssetKey("lead_stages") in graph.get(AssetKey("lead_consent")).parent_keys
    assert AssetKey("campaign_sends") in graph.get(AssetKey("outbound_dispatch")).parent_keys
    schedules = {s.name: s for s in defs.schedules or []}
    assert set(schedules) == {"campaign_batch_schedule", "appointment_reminders_schedule",
                              "appointment_calendar_schedule"}
    schedule = schedules["campaign_batch_schedule"]
    assert isinstance(schedule, ScheduleDefinition)
    assert (schedule.job_name, schedule.cron_schedule) == ("campaign_job", "5 * * * *")
    # Reminders also run between batches, so a 1-hour reminder is not 55 minutes late; they follow consent.
    reminders = schedules["appointment_reminders_schedule"]
    assert isinstance(reminders, ScheduleDefinition) and reminders.job_name == "appointment_reminders_job"
    assert AssetKey("lead_consent") in graph.get(AssetKey("appointment_reminders")).parent_keys


def test_the_funnel_marts_follow_stages_and_sends_and_the_docs_follow_the_marts() -> None:
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    funnel = AssetKey(["marts", "fct_funnel_daily"])
    assert AssetKey(["intermediate", "int_funnel_visits"]) in graph.get(funnel).parent_keys
    assert graph.get(AssetKey("dbt_docs")).parent_keys == {funnel}
    ancestors: set[AssetKey] = set()
    frontier = {funnel}
    while frontier:
        frontier = {key for child in frontier for key in graph.get(child).parent_keys} - ancestors
        ancestors |= frontier
    assert {AssetKey("lead_stages"), AssetKey("campaign_sends"), AssetKey("landed_messages")} <= ancestors


def test_the_calendar_sync_runs_on_its_own_schedule() -> None:
    from pipelines.definitions import defs

    schedule = next(s for s in defs.schedules or [] if s.name == "appointment_calendar_schedule")
    assert isinstance(schedule, ScheduleDefinition)
    assert (schedule.job_name, schedule.cron_schedule) == ("appointment_calendar_job", "*/10 * * * *")
    job = defs.resolve_job_def("appointment_calendar_job")
    assert AssetKey("appointment_calendar") in job.asset_layer.executable_asset_keys
