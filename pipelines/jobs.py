"""Jobs: what a sensor, a schedule or an analyst launches."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from assets.analytics import leadflow_dbt_models

landing_job = define_asset_job(
    "landing_job",
    selection=AssetSelection.assets("landed_messages", "leads", "lead_qualifications", "lead_scores",
                                    "lead_stages"),
    description="Land what waits in Kafka into PostgreSQL, then resolve, qualify and score the leads it touched "
                "(launched by kafka_landing_sensor; every step is incremental).",
)

analytics_job = define_asset_job(
    "analytics_job",
    selection=AssetSelection.assets(leadflow_dbt_models),
    description="dbt build of the models over the landed data, with dbt tests as asset checks.",
)
