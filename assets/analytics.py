"""dbt models as Dagster assets (dbt tests become asset checks), downstream of the landing."""


import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

# dbt is installed beside this interpreter; make it findable when the virtualenv is not activated
# (`.venv/bin/leadflow demo`), for both dagster-dbt's resource and its manifest preparer.
_interpreter_bin = Path(sys.executable).parent
if shutil.which("dbt") is None and (_interpreter_bin / "dbt").exists():
    os.environ["PATH"] = f"{_interpreter_bin}{os.pathsep}{os.environ.get('PATH', '')}"

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
# `dagster dev` re-parses on start; elsewhere parse once when no manifest exists yet (fresh clone).
dbt_project.prepare_if_dev()
if not dbt_project.manifest_path.exists():
    dbt_project.preparer.prepare(dbt_project)


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project)
def leadflow_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    yield from dbt.cli(["build"], context=context).stream()
