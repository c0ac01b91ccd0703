{# A surrogate key: the hash of the given columns, nulls as a marker (cross-database). #}
{% macro surrogate_key(columns) -%}
    {{ dbt.hash(dbt.concat(surrogate_key_parts(columns))) }}
{%- endmacro %}

{% macro surrogate_key_parts(columns) -%}
    {%- set parts = [] -%}
    {%- for c in columns -%}
        {%- do parts.append("coalesce(cast(" ~ c ~ " as " ~ dbt.type_string() ~ "), '~null~')") -%}
        {%- if not loop.last -%}{%- do parts.append("'|'") -%}{%- endif -%}
    {%- endfor -%}
    {{ return(parts) }}
{%- endmacro %}

{# Hour of day (0-23) of a timestamp. #}
{% macro hour_of(ts) -%}
    cast(extract(hour from {{ ts }}) as {{ dbt.type_int() }})
{%- endmacro %}

{# ISO day of week, 1 (Monday) to 7 (Sunday), per adapter. #}
{% macro iso_day_of_week(d) -%}
    {{ return(adapter.dispatch('iso_day_of_week')(d)) }}
{%- endmacro %}

{% macro default__iso_day_of_week(d) -%}
    cast(extract(isodow from {{ d }}) as {{ dbt.type_int() }})
{%- endmacro %}

{% macro bigquery__iso_day_of_week(d) -%}
    mod(extract(dayofweek from {{ d }}) + 5, 7) + 1
{%- endmacro %}
