# One image for every Leadflow process: migrations, ingest API, reports API, Dagster webserver and daemon
# (docker-compose.yml; tests/test_deployment.py checks that each service's command finds what it needs here).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DAGSTER_HOME=/opt/dagster/home LEADFLOW_HOME=/var/lib/leadflow
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY leadflow ./leadflow
COPY ingest_api ./ingest_api
COPY reports_api ./reports_api
COPY sensors ./sensors
COPY assets ./assets
COPY pipelines ./pipelines
COPY dbt_project ./dbt_project
COPY workspace.yaml ./
# The code stays root's and read-only to the services; they write only Dagster's home (runs, dbt docs),
# Leadflow's state directory and dbt's target and logs.
RUN useradd --system --user-group --uid 10001 --home-dir "$LEADFLOW_HOME" --no-create-home leadflow \
    && pip install --no-cache-dir -c constraints.txt '.[k8s]' \
    && mkdir -p "$DAGSTER_HOME" "$LEADFLOW_HOME" && cp leadflow/services/dagster.yaml "$DAGSTER_HOME/dagster.yaml" \
    && cd dbt_project && dbt parse --profiles-dir . && mkdir -p target logs \
    && chown -R leadflow:leadflow "$DAGSTER_HOME" "$LEADFLOW_HOME" /app/dbt_project/target /app/dbt_project/logs
USER leadflow
