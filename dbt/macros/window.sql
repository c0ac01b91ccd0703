{# The partition window orch passes in --vars: `where` clauses for incremental models. #}

{% macro window_start() -%}
    {%- set v = var('window_start', none) -%}
    {%- if v is none -%}null{%- else -%}cast('{{ v }}' as {{ dbt.type_timestamp() }}){%- endif -%}
{%- endmacro %}

{% macro window_end() -%}
    {%- set v = var('window_end', none) -%}
    {%- if v is none -%}null{%- else -%}cast('{{ v }}' as {{ dbt.type_timestamp() }}){%- endif -%}
{%- endmacro %}

{# Rows of `column` inside the window, or every row when no window was given. #}
{% macro in_window(column) -%}
    {%- if var('window_start', none) is not none and var('window_end', none) is not none -%}
        {{ column }} >= {{ window_start() }} and {{ column }} < {{ window_end() }}
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{# The incremental strategy that replaces an hour's rows on each adapter. #}
{% macro hourly_strategy() -%}
    {%- if target.type == 'bigquery' -%}merge{%- else -%}delete+insert{%- endif -%}
{%- endmacro %}
