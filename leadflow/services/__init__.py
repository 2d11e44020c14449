"""Embedded PostgreSQL and Kafka-protocol broker for local runs, demos and tests.

Production points ``LEADFLOW_DATABASE_URL`` and ``LEADFLOW_KAFKA_BOOTSTRAP_SERVERS`` at real
services (see docker-compose.yml) and never starts these.
"""
