"""Brokers (tenants) in PostgreSQL: secrets are referenced by variable name, never stored."""

from __future__ import annotations

import json
import subprocess
import sys

from leadflow.brokers import add_broker, list_brokers
from leadflow.config import Settings
from leadflow.db.connection import connect


def test_registering_stores_variable_names_and_never_secret_values(settings: Settings, monkeypatch: object) -> None:
    broker = add_broker(settings.database_url, "casa-verde", name="Casa Verde", country="AR",
                        timezone="America/Argentina/Buenos_Aires",
                        secret_env={"telegram_secret_token": "CASA_VERDE_TG"})
    assert broker.secret_env_name("telegram_secret_token") == "CASA_VERDE_TG"
    assert broker.secret_env_name("form_api_key") == "LEADFLOW_CASA_VERDE_FORM_API_KEY"
    conn = connect(settings.database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT row_to_json(b)::text FROM leadflow.brokers b WHERE slug = 'casa-verde'")
        row = cur.fetchone()
    conn.close()
    assert row is not None
    assert json.loads(row[0])["secret_env"] == {"telegram_secret_token": "CASA_VERDE_TG"}


def test_registering_again_updates_instead_of_duplicating(settings: Settings) -> None:
    add_broker(settings.database_url, "mar-azul", name="Mar Azul", country="ES", timezone="Europe/Madrid")
    again = add_broker(settings.database_url, "mar-azul", name="Mar Azul Inmobiliaria", country="ES",
                       timezone="Europe/Madrid")
    matching = [b for b in list_brokers(settings.database_url) if b.slug == "mar-azul"]
    assert len(matching) == 1 and matching[0].name == "Mar Azul Inmobiliaria" == again.name


def test_cli_brokers_add_prints_where_each_secret_is_read_from(settings: Settings) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "leadflow.cli", "brokers", "add", "sol-del-sur", "--name", "Sol del Sur",
         "--country", "CL", "--timezone", "America/Santiago"],
        capture_output=True, text=True, timeout=60, check=True)
    assert "$LEADFLOW_SOL_DEL_SUR_WHATSAPP_APP_SECRET (not set)" in proc.stdout
