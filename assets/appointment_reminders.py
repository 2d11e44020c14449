"""Visit reminders: the scheduled batch reminds each lead of its visit on its chat, once per lead time."""

from datetime import UTC, datetime

from dagster import MaterializeResult, MetadataValue, asset

from assets.as_of import AsOf
from assets.campaigns import lead_consent
from leadflow.appointments.reminders import send_reminders
from leadflow.events import ChannelMessage
from leadflow.kafka import make_producer, produce_all
from pipelines.resources import ChannelSendersResource, KafkaResource, PostgresResource


@asset(group_name="appointments", kinds={"postgres", "kafka"}, deps=[lead_consent],
       description="Reminders of proposed and confirmed visits at each of the broker's lead times (24 h and 1 h by "
                   "default) on the lead's Telegram or WhatsApp (the approved template outside WhatsApp's 24-hour "
                   "window), each once; skipped when booked too late for it or the lead opted out; provider failures "
                   "retried by the next run, then recorded failed. Sent ones are produced onto the messages topic, "
                   "so they land in the lead's conversation.")
def appointment_reminders(config: AsOf, postgres: PostgresResource, kafka: KafkaResource,
                          channels: ChannelSendersResource) -> MaterializeResult:
    moment = config.moment()
    clock = (lambda: moment) if config.as_of else (lambda: datetime.now(UTC))
    producer = make_producer(kafka.bootstrap_servers)

    def publish(messages: list[ChannelMessage]) -> None:
        produce_all(producer, kafka.topics.messages, [(m.kafka_key(), m.model_dump_json().encode()) for m in messages],
                    timeout_s=15)

    result = send_reminders(postgres.url, channels.senders(clock), clock, publish=publish)
    return MaterializeResult(metadata={
        "planned": result.planned, "sent": result.sent, "skipped": MetadataValue.json(result.skipped),
        "retry_later": MetadataValue.json(result.retry_later), "failed": MetadataValue.json(result.failed),
        "produced": result.produced})
