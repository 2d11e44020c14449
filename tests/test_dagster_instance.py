"""Dagster's own storage on PostgreSQL through dagster-postgres, configured by the dagster.yaml we ship."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from leadflow.config import Settings, to_psycopg2_url
from leadflow.db.connection import connect
from leadflow.services.manager import DAGSTER_YAML
from pipelines.inprocess import QUIET


def test_runs_are_stored_in_postgres_by_the_shipped_instance_config(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.definitions import defs

    shutil.copy(DAGSTER_YAML, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    # The psycopg2 form: dagster-postgres with SQLAlchemy 2.1 fails on a bare postgresql:// URL.
    monkeypatch.setenv("LEADFLOW_DAGSTER_DATABASE_URL", to_psycopg2_url(settings.database_url))
    with DagsterInstance.get() as instance:
        run = defs.resolve_job_def("landing_job").execute_in_process(instance=instance, run_config=QUIET)
        assert run.success
        stored = instance.get_run_by_id(run.run_id)
        assert stored is not None and stored.status == DagsterRunStatus.SUCCESS
    conn = connect(settings.database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM public.runs WHERE run_id = %s", (run.run_id,))
        row = cur.fetchone()
    conn.close()
    assert row == (1,)
