{#- The bookkeeping of every incremental model, in one vocabulary: a `watermark` CTE holding what
    this table's last build read, then a `changed` CTE holding the keys the run redoes (a union of
    changed_keys() and of the model's own reasons, such as as_of moving).

    incremental_watermark(columns, newest_by=none, start="'-infinity'") renders the body of the
    `watermark` CTE: exactly one row, with each of `columns` (columns of {{ this }}) at its greatest,
    under its own name. Where the table holds no value (an empty incremental table) a watermark
    reads `start`, never null: an empty table has read nothing, so everything upstream is new (a
    null compares as unknown, and the run would redo nothing). -infinity suits timestamps; an
    integer id passes start=0. newest_by (an indexed column of {{ this }}, e.g. built_at) reads the
    watermarks off the newest row alone, found by that index, instead of scanning the table: for
    tables whose every row carries what the build that wrote it read.

    changed_keys(relation, keys, since, written_at='built_at', where=none) renders one member of the
    `changed` CTE: the distinct `keys` (expressions of `relation`'s columns, `as` allowed) of the
    rows of `relation` written (`written_at`) after watermark.`since`, plus the optional `where`
    condition. The watermark is read as a scalar subquery, so an index on `written_at` bounds the
    read. Members are joined with `union`; a hand-written member reads the watermark by
    `cross join watermark`. -#}
{% macro incremental_watermark(columns, newest_by=none, start="'-infinity'") -%}
    select
        {%- for column in columns %}
        coalesce(max({{ column }}), {{ start }}) as {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    {% if newest_by -%}
    from (select * from {{ this }} order by {{ newest_by }} desc limit 1) as newest
    {%- else -%}
    from {{ this }}
    {%- endif %}
{%- endmacro %}

{% macro changed_keys(relation, keys, since, written_at='built_at', where=none) -%}
    select distinct {{ keys | join(', ') }}
    from {{ relation }}
    where {{ written_at }} > (select watermark.{{ since }} from watermark)
    {%- if where %} and ({{ where }}){% endif %}
{%- endmacro %}
