-- One row per page viewed, built by hour.
{{ config(materialized='incremental', unique_key='event_id', incremental_strategy=hourly_strategy(), on_schema_change='fail') }}
select
    p.event_id,
    p.event_ts,
    cast(p.event_ts as date) as date_key,
    {{ hour_of('p.event_ts') }} as hour_of_day,
    p.user_id,
    u.user_key,
    case when p.city is null then null else {{ surrogate_key(['p.city', 'p.state', 'p.zip']) }} end as location_key,
    p.session_id,
    p.level,
    p.page,
    p.method,
    p.http_status,
    p.auth
from {{ ref('stg_page_view_events') }} p
left join {{ ref('dim_users') }} u
    on u.user_id = p.user_id
    and p.event_ts >= u.valid_from
    and (u.valid_to is null or p.event_ts < u.valid_to)
where {{ in_window('p.event_ts') }}
