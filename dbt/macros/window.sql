{# The partition window of a build: `where` clauses for incremental models. orch passes it in
   the environment (ORCH_WINDOW_START, ORCH_WINDOW_END: a changed variable does not make dbt
   reparse the whole project, as a changed --vars does); by hand, --vars window_start and
   window_end work too. Timestamps are UTC, `YYYY-MM-DD HH:MM:SS`. #}

{% macro window_bound(name) -%}
    {%- set v = var(name, none) -%}
    {%- if v is none -%}{%- set v = env_var('ORCH_' ~ (name | upper), '') or none -%}{%- endif -%}
    {{- return(v) -}}
{%- endmacro %}

{% macro window_start() -%}
    {%- set v = window_bound('window_start') -%}
    {%- if v is none -%}null{%- else -%}cast('{{ v }}' as {{ dbt.type_timestamp() }}){%- endif -%}
{%- endmacro %}

{% macro window_end() -%}
    {%- set v = window_bound('window_end') -%}
    {%- if v is none -%}null{%- else -%}cast('{{ v }}' as {{ dbt.type_timestamp() }}){%- endif -%}
{%- endmacro %}

{# Rows of `column` inside the window, or every row when no window was given. #}
{% macro in_window(column) -%}
    {%- if window_bound('window_start') is not none and window_bound('window_end') is not none -%}
        {{ column }} >= {{ window_start() }} and {{ column }} < {{ window_end() }}
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{# The incremental strategy that replaces the rows of the keys a build recomputes, per adapter. #}
{% macro replace_strategy() -%}
    {%- if target.type == 'bigquery' -%}merge{%- else -%}delete+insert{%- endif -%}
{%- endmacro %}
