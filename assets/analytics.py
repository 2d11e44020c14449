"""dbt models as Dagster assets (dbt tests become asset checks), and the dbt docs they describe."""


import json
import os
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets, get_asset_key_for_model

from leadflow.config import state_dir

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


class AnalyticsConfig(Config):
    # The instant the marts describe (ISO 8601). Empty: when the run starts. The models never read
    # the clock themselves, so a rebuild with the same as_of gives the same numbers.
    as_of: str = ""
    # Rebuild incremental models from scratch (after a change to their logic).
    full_refresh: bool = False


def as_of_instant(config: AnalyticsConfig) -> str:
    return config.as_of or datetime.now(UTC).isoformat()


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project)
def leadflow_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, config: AnalyticsConfig) -> Iterator[Any]:
    as_of = as_of_instant(config)
    context.log.info(f"dbt build as of {as_of}")
    # dbt reads the instant from LEADFLOW_AS_OF (macros/as_of.sql); the invocation copies the environment
    # when it starts, so it is set only around that call.
    previous = os.environ.get("LEADFLOW_AS_OF")
    os.environ["LEADFLOW_AS_OF"] = as_of
    try:
        invocation = dbt.cli(["build", "--full-refresh"] if config.full_refresh else ["build"], context=context)
    finally:
        if previous is None:
            os.environ.pop("LEADFLOW_AS_OF", None)
        else:
            os.environ["LEADFLOW_AS_OF"] = previous
    yield from invocation.stream()


def docs_dir() -> Path:
    """Where `dbt docs generate` writes the site the reports API serves at /dbt-docs/."""
    return Path(os.environ.get("LEADFLOW_DBT_DOCS_DIR") or state_dir() / "dbt-docs")


@asset(
    deps=[get_asset_key_for_model([leadflow_dbt_models], "fct_funnel_daily")],
    group_name="analytics",
    description="dbt's documentation site (models, columns, tests, lineage) over the live catalog; the reports "
                "API serves it at /dbt-docs/.",
)
def dbt_docs(context: AssetExecutionContext, dbt: DbtCliResource) -> MaterializeResult:
    target = docs_dir()
    # Its own target path: the manifest Dagster loaded stays untouched while the docs are written.
    dbt.cli(["docs", "generate", "--target-path", str(target)], manifest=dbt_project.manifest_path,
            raise_on_error=True).wait()
    catalog = json.loads((target / "catalog.json").read_text())
    return MaterializeResult(metadata={
        "path": MetadataValue.path(str(target / "index.html")),
        "models_in_catalog": len(catalog.get("nodes", {})),
        "served_at": "/dbt-docs/ of the reports API (leadflow reports-api)",
    })
