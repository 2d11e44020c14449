"""Leads' answers about visits, for brokers whose bot is off: booked or updated, the reply queued for dispatch."""

from dagster import MaterializeResult, MetadataValue, asset

from assets.as_of import AsOf
from assets.campaigns import campaign_sends
from leadflow.appointments.answers import answer_replies
from leadflow.kafka import make_producer, produce_all
from pipelines.resources import KafkaResource, PostgresResource


@asset(group_name="campaigns", kinds={"postgres", "kafka"}, deps=[campaign_sends],
       description="Answers to the visit slots a campaign offered (\"la segunda\", \"el martes a las 5\", "
                   "\"no voy a poder\"), for brokers without the bot: each read once, the visit booked, confirmed, "
                   "cancelled or moved, and the reply queued as an outbound send for the dispatcher.")
def appointment_answers(config: AsOf, postgres: PostgresResource, kafka: KafkaResource) -> MaterializeResult:
    producer = make_producer(kafka.bootstrap_servers)

    def publish(commands: list[tuple[bytes, bytes]]) -> None:
        produce_all(producer, kafka.topics.outbound, commands)

    result = answer_replies(postgres.url, config.moment(), publish)
    return MaterializeResult(metadata={"read": result.read, "replies_queued": result.queued,
                                       "outcomes": MetadataValue.json(result.outcomes),
                                       "unanswered": MetadataValue.json(result.unanswered)})
