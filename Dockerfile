# One image for every Leadflow process (ingest API, Dagster webserver and daemon, migrations).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DAGSTER_HOME=/opt/dagster/home
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY leadflow ./leadflow
COPY ingest_api ./ingest_api
COPY sensors ./sensors
COPY assets ./assets
COPY pipelines ./pipelines
COPY dbt_project ./dbt_project
COPY workspace.yaml ./
RUN pip install --no-cache-dir -c constraints.txt . \
    && mkdir -p "$DAGSTER_HOME" && cp leadflow/services/dagster.yaml "$DAGSTER_HOME/dagster.yaml" \
    && cd dbt_project && dbt parse --profiles-dir .
