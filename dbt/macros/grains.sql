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

{#
  `select '<grain>' as grain, <period_start> as period_start, <columns> from <relation>
  group by 1, 2` for every grain, joined by `union all`: one query answering at each grain.
  `columns` is the aggregate list (text), `extra_group_by` more grouping columns (also selected
  first in `columns`).
#}
{% macro by_grain(relation, ts, columns, extra_group_by=[]) -%}
    {%- for g in grains() %}
    select
        '{{ g }}' as grain,
        {{ period_start(g, ts) }} as period_start,
        {{ columns }}
    from {{ relation }}
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
