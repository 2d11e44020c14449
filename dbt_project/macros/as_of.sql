{#- The instant the models describe, as a timestamptz literal. Passed by the caller, never now():
    LEADFLOW_AS_OF (what the Dagster asset sets), or the var as_of (unit tests and `dbt --vars`),
    or far in the future (everything that happened counts). An environment variable rather than
    a var, so a new instant on every run does not cost dbt a full re-parse. -#}
{% macro as_of() -%}
    '{{ var("as_of", env_var("LEADFLOW_AS_OF", "2100-01-01T00:00:00Z")) }}'::timestamptz
{%- endmacro %}
