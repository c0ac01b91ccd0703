-- One row per song played, built by hour: a build with the partition window replaces that
-- window's rows.
{{ config(materialized='incremental', unique_key='event_id', incremental_strategy=hourly_strategy(), on_schema_change='fail') }}
select
    l.event_id,
    l.event_ts,
    cast(l.event_ts as date) as date_key,
    {{ hour_of('l.event_ts') }} as hour_of_day,
    l.user_id,
    u.user_key,
    {{ surrogate_key(['l.artist', 'l.song']) }} as song_key,
    {{ surrogate_key(['l.artist']) }} as artist_key,
    case when l.city is null then null else {{ surrogate_key(['l.city', 'l.state', 'l.zip']) }} end as location_key,
    l.session_id,
    l.level,
    l.duration_seconds
from {{ ref('stg_listen_events') }} l
left join {{ ref('dim_users') }} u
    on u.user_id = l.user_id
    and l.event_ts >= u.valid_from
    and (u.valid_to is null or l.event_ts < u.valid_to)
where {{ in_window('l.event_ts') }}
