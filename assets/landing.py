"""The landing: Kafka records → ``leadflow.raw_messages`` (plus statuses and dead letters)."""


from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from leadflow.db.connection import connect
from leadflow.landing import land
from pipelines.resources import KafkaResource, PostgresResource


class LandingConfig(Config):
    max_records_per_batch: int = 5000
    # None: land until a poll comes back empty.
    max_batches: int | None = None


@asset(
    group_name="landing",
    kinds={"kafka", "postgres"},
    description="Channel messages, delivery statuses and dead letters landed from Kafka exactly once "
    "(offsets committed with the rows).",
)
def landed_messages(context: AssetExecutionContext, config: LandingConfig, postgres: PostgresResource,
                    kafka: KafkaResource) -> MaterializeResult:
    result = land(postgres.url, kafka.bootstrap_servers, kafka.topics,
                  max_records_per_batch=config.max_records_per_batch, max_batches=config.max_batches)
    context.log.info(
        "landed %s messages, %s statuses, %s dead letters from %s records in %s batches (%.2fs)",
        result.messages_landed, result.statuses_landed, result.dead_letters_landed, result.records_read,
        result.batches, result.seconds,
    )
    return MaterializeResult(metadata={
        "records_read": result.records_read,
        "messages_landed": result.messages_landed,
        "statuses_landed": result.statuses_landed,
        "dead_letters_landed": result.dead_letters_landed,
        "duplicates_absorbed": result.duplicates_absorbed,
        "undecodable_records": result.undecodable_records,
        "batches": result.batches,
        "seconds": MetadataValue.float(round(result.seconds, 3)),
        "next_offsets": MetadataValue.json(result.next_offsets),
    })


def scalar(url: str, sql: str) -> int:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return int(row[0]) if row else 0
    finally:
        conn.close()


@asset_check(asset=landed_messages, description="Every landed row carries its broker.")
def landed_rows_have_a_broker(postgres: PostgresResource) -> AssetCheckResult:
    missing = scalar(postgres.url, """
        SELECT (SELECT count(*) FROM leadflow.raw_messages WHERE broker_id IS NULL)
             + (SELECT count(*) FROM leadflow.delivery_statuses WHERE broker_id IS NULL)
             + (SELECT count(*) FROM leadflow.dead_letters WHERE broker_id IS NULL)""")
    return AssetCheckResult(passed=missing == 0, metadata={"rows_without_broker": missing})


@asset_check(asset=landed_messages, description="No provider message id landed twice for a broker and channel.")
def no_duplicate_provider_message_ids(postgres: PostgresResource) -> AssetCheckResult:
    duplicates = scalar(postgres.url, """
        SELECT count(*) FROM (
            SELECT 1 FROM leadflow.raw_messages GROUP BY broker_id, channel, provider_message_id HAVING count(*) > 1
        ) d""")
    return AssetCheckResult(passed=duplicates == 0, severity=AssetCheckSeverity.ERROR,
                            metadata={"duplicated_ids": duplicates})
