{#- Row-level security on a mart: the reports role reads only the rows of the broker its
    transaction serves (leadflow.visible_broker, migration 0010). Rebuilt tables lose their
    policies, so every build puts it back. The schema's USAGE grant is in on-run-end
    (grant_schema_usage): granted from parallel threads it fails with "tuple concurrently updated". -#}
{% macro broker_row_security() %}
    grant select on {{ this }} to leadflow_reports;
    alter table {{ this }} enable row level security;
    drop policy if exists broker_isolation on {{ this }};
    create policy broker_isolation on {{ this }} for select to leadflow_reports
        using (leadflow.visible_broker(broker_id))
{% endmacro %}

{% macro grant_schema_usage(schemas) %}
    {% for schema in schemas %}
        grant usage on schema {{ schema }} to leadflow_reports;
    {% endfor %}
{% endmacro %}
