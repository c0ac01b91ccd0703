-- One row per log-in attempt, built by hour.
{{ config(materialized='incremental', unique_key='event_id', incremental_strategy=hourly_strategy(), on_schema_change='fail') }}
select
    a.event_id,
    a.event_ts,
    cast(a.event_ts as date) as date_key,
    {{ hour_of('a.event_ts') }} as hour_of_day,
    a.user_id,
    case when a.city is null then null else {{ surrogate_key(['a.city', 'a.state', 'a.zip']) }} end as location_key,
    a.session_id,
    a.level,
    a.success
from {{ ref('stg_auth_events') }} a
where {{ in_window('a.event_ts') }}
