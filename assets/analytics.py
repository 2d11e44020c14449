"""dbt models as Dagster assets (dbt tests become asset checks), and the dbt docs they describe."""


import json
import shutil
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets, get_asset_key_for_model

from assets.as_of import AsOf
from leadflow.config import Settings, put_on_path, scoped_environment

# dbt is installed beside this interpreter; make it findable when the virtualenv is not activated
# (`.venv/bin/leadflow demo`), for both dagster-dbt's resource and its manifest preparer.
if shutil.which("dbt") is None and Path(sys.executable).with_name("dbt").exists():
    put_on_path(Path(sys.executable).parent)

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"


@cache
def leadflow_dbt_project() -> DbtProject:
    """The dbt project, built (and parsed on a fresh clone) the first time the code location asks for it."""
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    # `dagster dev` re-parses on start; elsewhere parse when there is no manifest yet (fresh clone)
    # or a model, macro or YAML file changed since it was written (a pull or an edit: a stale
    # manifest names tests the build no longer has, and the run fails on them).
    project.prepare_if_dev()
    if _manifest_is_stale(project.manifest_path):
        project.preparer.prepare(project)
    return project


def _manifest_is_stale(manifest: Path) -> bool:
    if not manifest.exists():
        return True
    written = manifest.stat().st_mtime
    sources = [DBT_PROJECT_DIR / "dbt_project.yml", DBT_PROJECT_DIR / "packages.yml"]
    for folder in ("models", "macros", "seeds", "tests", "snapshots"):
        sources.extend(path for path in (DBT_PROJECT_DIR / folder).rglob("*") if path.is_file())
    return any(path.exists() and path.stat().st_mtime > written for path in sources)


dbt_project = leadflow_dbt_project()


class AnalyticsConfig(AsOf):
    # Rebuild incremental models from scratch (after a change to their logic).
    full_refresh: bool = False


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project)
def leadflow_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, config: AnalyticsConfig) -> Iterator[Any]:
    as_of = config.instant()
    context.log.info(f"dbt build as of {as_of}")
    # dbt reads the instant from LEADFLOW_AS_OF (macros/as_of.sql).
    # dagster-dbt's cli() copies this process's environment and takes none of its own; a --vars instant
    # would cost dbt a full re-parse on every run.
    with scoped_environment({"LEADFLOW_AS_OF": as_of}):
        invocation = dbt.cli(["build", "--full-refresh"] if config.full_refresh else ["build"], context=context)
    yield from invocation.stream()


@asset(
    deps=[get_asset_key_for_model([leadflow_dbt_models], "fct_funnel_daily")],
    group_name="analytics",
    description="dbt's documentation site (models, columns, tests, lineage) over the live catalog; the reports "
                "API serves it at /dbt-docs/.",
)
def dbt_docs(context: AssetExecutionContext, dbt: DbtCliResource) -> MaterializeResult:
    target = Settings.from_environment().docs_dir
    # Its own target path: the manifest Dagster loaded stays untouched while the docs are written.
    dbt.cli(["docs", "generate", "--target-path", str(target)], manifest=dbt_project.manifest_path,
            raise_on_error=True).wait()
    catalog = json.loads((target / "catalog.json").read_text())
    return MaterializeResult(metadata={
        "path": MetadataValue.path(str(target / "index.html")),
        "models_in_catalog": len(catalog.get("nodes", {})),
        "served_at": "/dbt-docs/ of the reports API (leadflow reports-api)",
    })
