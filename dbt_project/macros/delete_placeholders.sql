{#- Incremental models keyed by something that can disappear (a period left without visits, a lead
    merged away) emit one placeholder row for such a key, with `marker` null, so delete+insert clears
    the key's old rows; after the run this deletes the placeholders. -#}
{% macro delete_placeholders(marker='stage') %}
    {% if is_incremental() %}
    delete from {{ this }} where {{ marker }} is null
    {% endif %}
{% endmacro %}
