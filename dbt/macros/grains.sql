{#
  The grains every time-series mart answers at (the lambda-architecture seed's granularities):
  minute (the real-time view), hour, day, week (ISO: from Monday), month and year.
#}
{% macro grains() -%}
    {{ return(['minute', 'hour', 'day', 'week', 'month', 'year']) }}
{%- endmacro %}

{# The start of the period of `grain` holding `ts`, as a timestamp (UTC), per adapter. #}
{% macro period_start(grain, ts) -%}
    {{ return(adapter.dispatch('period_start')(grain, ts)) }}
{%- endmacro %}

{% macro default__period_start(grain, ts) -%}
    cast({{ dbt.date_trunc(grain, ts) }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{# BigQuery's `week` starts on Sunday; `isoweek` on Monday, as DuckDB's. #}
{% macro bigquery__period_start(grain, ts) -%}
    timestamp_trunc(cast({{ ts }} as timestamp), {{ 'isoweek' if grain == 'week' else grain }})
{%- endmacro %}

{# The start of the period of `grain` after the one starting at `ts`, per adapter. #}
{% macro plus_one_period(grain, ts) -%}
    {{ return(adapter.dispatch('plus_one_period')(grain, ts)) }}
{%- endmacro %}

{% macro default__plus_one_period(grain, ts) -%}
    cast({{ dbt.dateadd(grain, 1, ts) }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{# BigQuery adds weeks, months and years to a DATETIME only (TIMESTAMP_ADD stops at days). #}
{% macro bigquery__plus_one_period(grain, ts) -%}
    timestamp(datetime_add(datetime(cast({{ ts }} as timestamp)), interval 1 {{ grain }}))
{%- endmacro %}

{#
  The rows of `ts` an incremental by-period mart recomputes at `grain`: every row of each
  period that overlaps the build's window (the window's own minutes and hour, its whole day,
  ISO week, month and year), so that each such period is aggregated again from all its rows,
  whatever order its hours arrived in. Every row when the mart is built from nothing (a first
  build, --full-refresh) or without a window. The bounds on `ts` itself let the warehouse prune
  (DuckDB's zone maps, BigQuery's partitions); `period_start(ts) < end` is the exact test.
#}
{% macro in_window_periods(grain, ts) -%}
    {%- set start = window_bound('window_start') -%}
    {%- set end = window_bound('window_end') -%}
    {%- if is_incremental() and start is not none and end is not none -%}
        {{ ts }} >= {{ period_start(grain, window_start()) }}
        and {{ ts }} < {{ plus_one_period(grain, period_start(grain, window_end())) }}
        and {{ period_start(grain, ts) }} < {{ window_end() }}
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#
  The configuration of a mart by period: incremental, each build replacing the rows of the
  periods its window touches at every grain (in_window_periods), keyed by `unique_key`
  (delete+insert on DuckDB, merge on BigQuery). A mart reports `orch/scope periods`
  (macros/orch.sql).
#}
{% macro period_mart_config(unique_key) -%}
    {{ config(
        materialized='incremental',
        unique_key=unique_key,
        incremental_strategy=replace_strategy(),
        on_schema_change='fail',
        meta={'orch_scope': 'periods'}
    ) }}
{%- endmacro %}

{#
  `select '<grain>' as grain, <period_start> as period_start, <columns> from <relation>
  group by 1, 2` for every grain, joined by `union all`: one query answering at each grain.
  `columns` is the aggregate list (text), `extra_group_by` more grouping columns (also selected
  first in `columns`). In an incremental build, each grain reads only the rows of the periods
  its window touches (in_window_periods).
#}
{% macro by_grain(relation, ts, columns, extra_group_by=[]) -%}
    {%- for g in grains() %}
    select
        '{{ g }}' as grain,
        {{ period_start(g, ts) }} as period_start,
        {{ columns }}
    from {{ relation }}
    where {{ in_window_periods(g, ts) }}
    group by {{ (['1', '2'] + extra_group_by) | join(', ') }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
{%- endmacro %}

{#
  The popularity score of a song or artist within its period, 0 to 100: 60 % its plays and
  40 % its distinct listeners, each relative to the most played (most listened) one of the
  period. Listeners weigh in so that a few users replaying a song do not outrank a song many
  users play. Expects `plays` and `listeners` columns and a `partition` clause.
#}
{% macro popularity_score(partition_by) -%}
    round(
        60.0 * plays / max(plays) over (partition by {{ partition_by }})
        + coalesce(40.0 * listeners / nullif(max(listeners) over (partition by {{ partition_by }}), 0), 0),
        2
    )
{%- endmacro %}
