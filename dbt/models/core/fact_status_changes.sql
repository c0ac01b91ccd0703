-- One row per subscription change (the level after it), built by hour.
{{ config(materialized='incremental', unique_key='event_id', incremental_strategy=hourly_strategy(), on_schema_change='fail') }}
select
    s.event_id,
    s.event_ts,
    cast(s.event_ts as date) as date_key,
    {{ hour_of('s.event_ts') }} as hour_of_day,
    s.user_id,
    u.user_key,
    s.session_id,
    s.level
from {{ ref('stg_status_change_events') }} s
left join {{ ref('dim_users') }} u
    on u.user_id = s.user_id
    and s.event_ts >= u.valid_from
    and (u.valid_to is null or s.event_ts < u.valid_to)
where {{ in_window('s.event_ts') }}
