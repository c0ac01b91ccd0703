-- Active users (anyone with a user id who viewed a page) at every grain (minute, hour, day,
-- week, month, year), paid and free, with the listeners among them and their stream hours.
{{ period_mart_config(unique_key=['grain', 'period_start']) }}
with activity as (
    select user_id, level, event_ts from {{ ref('fact_page_views') }} where user_id is not null
),
listening as (
    select user_id, event_ts, duration_seconds from {{ ref('fact_listens') }} where user_id is not null
),
periods as (
    {{ by_grain('activity', 'event_ts',
        "count(distinct user_id) as active_users,
        count(distinct case when level = 'paid' then user_id end) as paid_users,
        count(distinct case when level = 'free' then user_id end) as free_users") }}
),
streams as (
    {{ by_grain('listening', 'event_ts',
        "count(distinct user_id) as listeners,
        sum(duration_seconds) / 3600.0 as stream_hours") }}
)
-- A period with listens but no page views yet (late listens) still counts its streams.
select
    coalesce(p.grain, s.grain) as grain,
    coalesce(p.period_start, s.period_start) as period_start,
    coalesce(p.active_users, 0) as active_users,
    coalesce(p.paid_users, 0) as paid_users,
    coalesce(p.free_users, 0) as free_users,
    coalesce(s.listeners, 0) as listeners,
    coalesce(s.stream_hours, 0) as stream_hours
from periods p
full outer join streams s on s.grain = p.grain and s.period_start = p.period_start
