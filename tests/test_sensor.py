"""The landing sensor with build_sensor_context, against real Kafka, PostgreSQL and a Dagster instance."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance, RunRequest, SensorResult, SkipReason, build_sensor_context

from leadflow.config import Settings, Topics
from leadflow.landing import land
from pipelines.resources import KafkaResource, PostgresResource
from sensors.kafka_landing import FINGERPRINT_TAG, kafka_landing_sensor
from tests.conftest import BrokerFactory
from tests.test_landing import produce_messages


def evaluate(instance: DagsterInstance, settings: Settings, topics: Topics,
             database_url: str | None = None) -> SensorResult | SkipReason:
    context = build_sensor_context(instance=instance, resources={
        "postgres": PostgresResource(url=database_url or settings.database_url),
        "kafka": KafkaResource(bootstrap_servers=settings.kafka_bootstrap_servers, topic_prefix=topics.prefix),
    })
    result = kafka_landing_sensor(context)
    assert isinstance(result, SensorResult | SkipReason)
    return result


def only_request(result: SensorResult | SkipReason) -> RunRequest:
    assert isinstance(result, SensorResult), result
    [request] = result.run_requests or []
    assert isinstance(request, RunRequest)
    return request


@pytest.fixture
def instance() -> DagsterInstance:
    return DagsterInstance.ephemeral()


def test_nothing_past_the_stored_offsets_means_no_run(instance: DagsterInstance, settings: Settings,
                                                     fresh_topics: Topics) -> None:
    result = evaluate(instance, settings, fresh_topics)
    assert isinstance(result, SkipReason)


def test_waiting_records_request_a_landing_run_keyed_by_the_offsets(
        instance: DagsterInstance, settings: Settings, fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    produce_messages(settings, fresh_topics, make_broker(), 5)
    request = only_request(evaluate(instance, settings, fresh_topics))
    assert request.run_key is not None and request.run_key.endswith("-0")
    assert request.tags[FINGERPRINT_TAG] == request.run_key.rsplit("-", 1)[0]


def test_after_a_landing_commits_the_run_key_changes(instance: DagsterInstance, settings: Settings,
                                                    fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    broker = make_broker()
    produce_messages(settings, fresh_topics, broker, 5)
    before = only_request(evaluate(instance, settings, fresh_topics)).run_key
    land(settings.database_url, settings.kafka_bootstrap_servers, fresh_topics)
    assert isinstance(evaluate(instance, settings, fresh_topics), SkipReason)
    produce_messages(settings, fresh_topics, broker, 1)
    after = only_request(evaluate(instance, settings, fresh_topics)).run_key
    assert before != after


def test_a_failed_landing_is_retried_under_a_new_run_key(instance: DagsterInstance, settings: Settings,
                                                        fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    """Dagster never launches a run key twice; a failed landing must still be retried."""
    from pipelines.definitions import defs

    produce_messages(settings, fresh_topics, make_broker(), 5)
    first = only_request(evaluate(instance, settings, fresh_topics))
    # The run fails (its database does not exist), leaving the offsets where they were.
    job = defs.resolve_job_def("landing_job")
    broken = job.execute_in_process(
        instance=instance, raise_on_error=False, tags={**first.tags, "dagster/run_key": first.run_key or ""},
        resources={"postgres": PostgresResource(url=settings.database_url + "_missing"),
                   "kafka": KafkaResource(bootstrap_servers=settings.kafka_bootstrap_servers,
                                          topic_prefix=fresh_topics.prefix)})
    assert not broken.success
    retry = only_request(evaluate(instance, settings, fresh_topics))
    assert retry.tags[FINGERPRINT_TAG] == first.tags[FINGERPRINT_TAG]
    assert retry.run_key != first.run_key and retry.run_key is not None and retry.run_key.endswith("-1")


def test_no_second_run_while_one_is_in_flight(instance: DagsterInstance, settings: Settings,
                                              fresh_topics: Topics, make_broker: BrokerFactory) -> None:
    from dagster import DagsterRunStatus

    from pipelines.definitions import defs

    produce_messages(settings, fresh_topics, make_broker(), 5)
    request = only_request(evaluate(instance, settings, fresh_topics))
    job = defs.resolve_job_def("landing_job")
    run = instance.create_run_for_job(job_def=job, tags=request.tags, status=DagsterRunStatus.STARTED)
    assert run.status == DagsterRunStatus.STARTED
    assert isinstance(evaluate(instance, settings, fresh_topics), SkipReason)
