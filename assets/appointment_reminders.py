"""Visit reminders: the scheduled batch reminds each lead of its visit on its chat, once per lead time."""

from datetime import UTC, datetime

from dagster import MaterializeResult, MetadataValue, asset

from assets.as_of import AsOf
from assets.campaigns import lead_consent
from leadflow.appointments.reminders import send_reminders
from pipelines.resources import ChannelSendersResource, PostgresResource


@asset(group_name="appointments", kinds={"postgres"}, deps=[lead_consent],
       description="Reminders of proposed and confirmed visits at each of the broker's lead times (24 h and 1 h by "
                   "default) on the lead's Telegram or WhatsApp (the approved template outside WhatsApp's 24-hour "
                   "window), each once; skipped when booked too late for it or the lead opted out; provider failures "
                   "retried by the next run, then recorded failed.")
def appointment_reminders(config: AsOf, postgres: PostgresResource,
                          channels: ChannelSendersResource) -> MaterializeResult:
    moment = config.moment()
    clock = (lambda: moment) if config.as_of else (lambda: datetime.now(UTC))
    result = send_reminders(postgres.url, channels.senders(clock), clock)
    return MaterializeResult(metadata={
        "planned": result.planned, "sent": result.sent, "skipped": MetadataValue.json(result.skipped),
        "retry_later": MetadataValue.json(result.retry_later), "failed": MetadataValue.json(result.failed)})
