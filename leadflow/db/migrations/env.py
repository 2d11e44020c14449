"""Alembic environment: our tables and our version table live in the ``leadflow`` schema.

Dagster's own storage (dagster-postgres) also uses Alembic with an ``alembic_version`` table
in ``public``; keeping ours in ``leadflow`` lets both share one database without clashing.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

SCHEMA = "leadflow"


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        connection.commit()
        context.configure(connection=connection, version_table_schema=SCHEMA, transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
