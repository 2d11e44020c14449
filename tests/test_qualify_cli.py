"""`leadflow qualify`: the documented JSONL contract, end to end through the command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from leadflow.qualification.schema import CONTRACT_KEYS


def test_qualify_writes_one_contract_line_per_conversation_and_reports_bad_lines(tmp_path: Path) -> None:
    source = tmp_path / "conversations.jsonl"
    source.write_text("\n".join([
        json.dumps({"id": "c1", "channel": "whatsapp", "messages": [
            {"role": "agent", "text": "¿Qué buscas?"},
            {"role": "lead", "text": "Busco depto 2d2b en Ñuñoa hasta 5.200 UF, crédito preaprobado"}]}),
        "{not json",
        json.dumps({"id": "c2", "messages": [{"role": "lead", "text": "BAJA"}]}),
    ]) + "\n")
    output = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "leadflow.cli", "qualify", "--input", str(source), "--output",
                           str(output), "--country", "CL"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "line 2" in proc.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [list(row) for row in rows] == [list(CONTRACT_KEYS)] * 2
    assert rows[0]["budget_max"] == 5200 and rows[0]["budget_currency"] == "UF" and rows[0]["locations"] == ["ñuñoa"]
    assert rows[1]["opted_out"] is True and rows[1]["temperature"] == "cold"


def test_qualify_reads_stdin_and_writes_stdout() -> None:
    line = json.dumps({"id": 7, "messages": [{"role": "user", "text": "I want to rent in Brickell up to $3,000"}]})
    proc = subprocess.run([sys.executable, "-m", "leadflow.cli", "qualify", "--input", "-", "--country", "US"],
                          input=line, capture_output=True, text=True, timeout=60, check=True)
    row = json.loads(proc.stdout)
    assert (row["id"], row["operation"], row["budget_max"], row["budget_currency"], row["budget_period"]) == (
        7, "rent", 3000, "USD", "month")
