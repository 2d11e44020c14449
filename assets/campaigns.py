"""Consent, segments, campaign targeting and outbound dispatch: the scheduled campaign batch."""

from datetime import UTC, datetime

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from assets.as_of import AsOf
from assets.leads import lead_stages
from leadflow.campaigns.outcomes import campaign_stats, close_the_loop
from leadflow.campaigns.store import record_opt_outs, refresh_segments, target_campaigns
from leadflow.kafka import make_producer, produce_all
from leadflow.outbound.dispatcher import dispatch
from pipelines.resources import ChannelSendersResource, KafkaResource, PostgresResource


@asset(group_name="campaigns", kinds={"postgres", "polars"}, deps=[lead_stages],
       description="Leads who asked not to be contacted (BAJA, STOP, 'no me escriban más', 'no llamar'…), found in "
                   "their messages: every campaign stops for them, on every channel.")
def lead_consent(postgres: PostgresResource) -> MaterializeResult:
    return MaterializeResult(metadata={"opted_out_now": record_opt_outs(postgres.url)})


@asset(group_name="campaigns", kinds={"postgres", "polars"}, deps=[lead_consent],
       description="Every broker's segments evaluated over its lead profiles; entries and exits kept as history.")
def segment_memberships(config: AsOf, postgres: PostgresResource) -> MaterializeResult:
    result = refresh_segments(postgres.url, config.moment())
    return MaterializeResult(metadata={"members": MetadataValue.json(result.members), "entered": result.entered,
                                       "exited": result.exited})


@asset(group_name="campaigns", kinds={"postgres", "kafka"}, deps=[segment_memberships],
       description="Active campaigns: leads enrolled by their triggers, every due step decided (send, skip, defer, "
                   "stop) and each send written once per lead and step, its command produced to the outbound topic.")
def campaign_sends(context: AssetExecutionContext, config: AsOf, postgres: PostgresResource,
                   kafka: KafkaResource) -> MaterializeResult:
    producer = make_producer(kafka.bootstrap_servers)

    def publish(commands: list[tuple[bytes, bytes]]) -> None:
        produce_all(producer, kafka.topics.outbound, commands)

    result = target_campaigns(postgres.url, config.moment(), publish)
    context.log.info("enrolled %s, %s to send, skipped %s, deferred %s", result.enrolled, result.sent,
                     result.skipped, result.deferred)
    return MaterializeResult(metadata={
        "enrolled": result.enrolled, "to_send": result.sent, "stopped_opted_out": result.stopped,
        "skipped_by_reason": MetadataValue.json(result.skipped),
        "deferred_by_reason": MetadataValue.json(result.deferred),
        "already_decided": result.already_decided})


# After the answers about visits too (assets/appointment_answers.py): their replies go out in the same run.
@asset(group_name="campaigns", kinds={"kafka", "postgres"}, deps=[campaign_sends, AssetKey("appointment_answers")],
       description="The dispatcher: outbound commands sent through Telegram and WhatsApp, each send's fate recorded "
                   "(sent, pending for a retry, failed, skipped); provider outages are retried, nothing is lost.")
def outbound_dispatch(config: AsOf, postgres: PostgresResource, kafka: KafkaResource,
                      channels: ChannelSendersResource) -> MaterializeResult:
    moment = config.moment()
    clock = (lambda: moment) if config.as_of else (lambda: datetime.now(UTC))
    result = dispatch(postgres.url, kafka.bootstrap_servers, kafka.topics, channels.senders(clock), clock=clock)
    return MaterializeResult(metadata={
        "commands_read": result.commands_read, "sent": result.sent, "malformed": result.malformed,
        "retry_later": MetadataValue.json(result.retry_later), "failed": MetadataValue.json(result.failed),
        "skipped": MetadataValue.json(result.skipped), "already_handled": result.not_pending})


@asset(group_name="campaigns", kinds={"postgres"}, deps=[outbound_dispatch],
       description="Closing the loop: WhatsApp receipts and replies update each send (delivered, read, replied); "
                   "per campaign: sent, delivered, read, replied, failed, success and reply rates, and the leads "
                   "that advanced a stage after a touch.")
def campaign_results(postgres: PostgresResource) -> MaterializeResult:
    # Visits are booked from the lead's answer (appointment_answers, or the agent) and put in the calendar by
    # the appointments' calendar sync; the old accept-a-fixed-slot flow is retired (its table kept for history).
    loop = close_the_loop(postgres.url)
    stats = campaign_stats(postgres.url)
    return MaterializeResult(metadata={
        "newly_delivered": loop.delivered, "newly_read": loop.read, "newly_replied": loop.replied,
        "newly_failed": loop.failed,
        "campaigns": MetadataValue.json({f"{s['broker_id']}/{s['campaign']}": {k: v for k, v in s.items()
                                                                               if k not in ("broker_id", "campaign")}
                                         for s in stats})})
