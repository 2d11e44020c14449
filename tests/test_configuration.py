"""Configuration errors name the fix, and the CLI turns them into exit code 2 with one line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from leadflow.brokers import BrokerError, validate
from leadflow.config import ConfigurationError, Settings, database_parts, to_psycopg2_url
from leadflow.db.connection import connect
from leadflow.kafka import make_consumer
from leadflow.services.ports import free_port


def test_unreachable_postgres_names_the_variable_to_fix() -> None:
    port = free_port()
    with pytest.raises(ConfigurationError, match=rf"127\.0\.0\.1:{port}.*LEADFLOW_DATABASE_URL"):
        connect(f"postgresql://postgres@127.0.0.1:{port}/leadflow")


def test_unreachable_kafka_fails_fast_naming_the_variable() -> None:
    port = free_port()
    with pytest.raises(ConfigurationError, match=rf"127\.0\.0\.1:{port}.*LEADFLOW_KAFKA_BOOTSTRAP_SERVERS"):
        make_consumer(f"127.0.0.1:{port}")


def test_cli_reports_configuration_errors_in_one_line_with_exit_code_2(tmp_path: object) -> None:
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "LEADFLOW_HOME": str(tmp_path),
           "LEADFLOW_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/leadflow",
           "LEADFLOW_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    proc = subprocess.run([sys.executable, "-m", "leadflow.cli", "brokers", "list"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("leadflow: PostgreSQL at 127.0.0.1") and "Traceback" not in proc.stderr


def test_nothing_configured_and_nothing_started_says_how_to_start(tmp_path: object) -> None:
    env = {"PATH": "/usr/bin:/bin", "LEADFLOW_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "leadflow.cli", "brokers", "list"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "leadflow services up" in proc.stderr


def test_urls_are_normalised_for_each_client() -> None:
    assert to_psycopg2_url("postgres://u:p@h:1/d") == "postgresql+psycopg2://u:p@h:1/d"
    assert database_parts("postgresql://u:p%40ss@h:6543/leads") == {
        "host": "h", "port": "6543", "user": "u", "password": "p@ss", "dbname": "leads"}


@pytest.mark.parametrize(("slug", "country", "tz", "secret_env", "message"), [
    ("Bad Slug", "CL", "America/Santiago", {}, "slug"),
    ("acme", "XX", "America/Santiago", {}, "country"),
    ("acme", "CL", "Mars/Olympus", {}, "timezone"),
    ("acme", "CL", "America/Santiago", {"telegram_secret_token": "not a var"}, "environment variable"),
    ("acme", "CL", "America/Santiago", {"smtp_password": "X"}, "known secrets"),
])
def test_broker_registration_rejects_bad_input_with_the_field_named(slug: str, country: str, tz: str,
                                                                   secret_env: dict[str, str], message: str) -> None:
    with pytest.raises(BrokerError, match=message):
        validate(slug, country, tz, secret_env)


README = Path(__file__).resolve().parent.parent / "README.md"
SOURCE = [Path(__file__).resolve().parent.parent / package
          for package in ("leadflow", "ingest_api", "reports_api", "sensors", "assets", "pipelines")]


def readme_configuration_variables() -> set[str]:
    """Every variable named in the first column of README's configuration table."""
    section = README.read_text().split("## Configuration", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_every_setting_is_in_the_readme_table_and_every_row_is_a_setting() -> None:
    assert readme_configuration_variables() == Settings.variables()


def test_a_bad_setting_is_refused_with_the_variable_named_and_a_secret_never_echoed() -> None:
    with pytest.raises(ConfigurationError, match=r"LEADFLOW_KAFKA_PARTITIONS='many'.*LEADFLOW_BCRYPT_ROUNDS='99'"):
        Settings.from_environment({"LEADFLOW_KAFKA_PARTITIONS": "many", "LEADFLOW_BCRYPT_ROUNDS": "99"})
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_environment({"LEADFLOW_REPORTS_JWT_SECRET": "s3cr3t", "LEADFLOW_REPORTS_POOL_SIZE": "0"})
    assert "LEADFLOW_REPORTS_POOL_SIZE='0'" in str(refused.value) and "s3cr3t" not in str(refused.value)
    shown = repr(Settings.from_environment({"LEADFLOW_REPORTS_JWT_SECRET": "s3cr3t",
                                            "LEADFLOW_DATABASE_URL": "postgresql://u:pa55@db/x"}))
    assert "s3cr3t" not in shown and "pa55" not in shown


def test_only_the_settings_module_reads_the_environment() -> None:
    readers = {str(path.relative_to(README.parent)) for package in SOURCE for path in package.rglob("*.py")
               if re.search(r"os\.environ\.get|os\.getenv|os\.environ\[\"LEADFLOW|env_int\(", path.read_text())}
    assert readers == {"leadflow/config.py"}
