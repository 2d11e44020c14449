"""Jobs: what a sensor, a schedule or an analyst launches."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from assets.analytics import leadflow_dbt_models

landing_job = define_asset_job(
    "landing_job",
    selection=AssetSelection.assets("landed_messages"),
    description="Land what waits in Kafka into PostgreSQL (launched by kafka_landing_sensor).",
)

analytics_job = define_asset_job(
    "analytics_job",
    selection=AssetSelection.assets(leadflow_dbt_models),
    description="dbt build of the models over the landed data, with dbt tests as asset checks.",
)
