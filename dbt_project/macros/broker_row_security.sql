{#- Row-level security on a mart: the reports role reads only the rows of the broker its
    transaction's recorded scope names (leadflow.reports_broker_id, migration 0014; the marts hold
    no per-lead rows, so the AGENT rule does not apply). Each sub-select is evaluated once per query.
    Rebuilt tables lose their policies, so every build puts it back. The schema's USAGE grant is in
    on-run-end (grant_schema_usage): granted from parallel threads it fails with "tuple concurrently
    updated". -#}
{% macro broker_row_security() %}
    grant select on {{ this }} to leadflow_reports;
    alter table {{ this }} enable row level security;
    drop policy if exists broker_isolation on {{ this }};
    create policy broker_isolation on {{ this }} for select to leadflow_reports
        using (broker_id = (select leadflow.reports_broker_id()) or (select leadflow.reports_all_brokers()))
{% endmacro %}

{% macro grant_schema_usage(schemas) %}
    {% for schema in schemas %}
        grant usage on schema {{ schema }} to leadflow_reports;
    {% endfor %}
{% endmacro %}
