-- Users segmented by activity and engagement, one row per user, as of the latest event in the
-- warehouse (`as_of_ts`, not the clock: the same lake gives the same segments whenever and in
-- whatever order its hours were built). The rule, first match wins:
--   dormant  no event in the 7 days up to as_of_ts;
--   new      registered (or, without a registration, first seen) in the 7 days up to as_of_ts;
--   power    at least 100 plays in the 7 days up to as_of_ts (about two hours of music a day);
--   regular  active on at least 3 distinct days of the 7 days up to as_of_ts;
-- (the thresholds are vars: segment_power_plays, 100, and segment_regular_days, 3).
--   casual   everyone else (active in the last 7 days, but less).
-- "Active" is any event with the user's id: a page view, a play or a log-in.
{{ config(meta={'orch_why': "a user's segment depends on all of their history up to the latest event, so it is derived from every hour by each build"}) }}
with events as (
    select user_id, event_ts from {{ ref('fact_page_views') }} where user_id is not null
    union all
    select user_id, event_ts from {{ ref('fact_listens') }} where user_id is not null
    union all
    select user_id, event_ts from {{ ref('fact_auth') }} where user_id is not null
),
as_of as (
    select max(event_ts) as as_of_ts from events
),
recent as (
    select
        e.user_id,
        e.event_ts,
        case when {{ dbt.datediff('e.event_ts', 'a.as_of_ts', 'second') }} < 7 * 86400 then 1 else 0 end as in_last_7_days
    from events e
    cross join as_of a
),
activity as (
    select
        user_id,
        min(event_ts) as first_seen_ts,
        max(event_ts) as last_seen_ts,
        count(distinct cast(event_ts as date)) as active_days,
        count(distinct case when in_last_7_days = 1 then cast(event_ts as date) end) as active_days_last_7
    from recent
    group by user_id
),
listening as (
    select
        f.user_id,
        count(*) as plays,
        count(case when {{ dbt.datediff('f.event_ts', 'a.as_of_ts', 'second') }} < 7 * 86400 then 1 end) as plays_last_7,
        count(distinct f.session_key) as sessions,
        sum(f.duration_seconds) / 3600.0 as stream_hours
    from {{ ref('fact_listens') }} f
    cross join as_of a
    where f.user_id is not null
    group by f.user_id
),
measured as (
    select
        u.user_id,
        u.user_key,
        u.level,
        u.gender,
        u.registration_ts,
        a.first_seen_ts,
        a.last_seen_ts,
        o.as_of_ts,
        coalesce(a.active_days, 0) as active_days,
        coalesce(a.active_days_last_7, 0) as active_days_last_7,
        coalesce(l.plays, 0) as plays,
        coalesce(l.plays_last_7, 0) as plays_last_7,
        coalesce(l.sessions, 0) as sessions,
        coalesce(l.stream_hours, 0) as stream_hours
    from {{ ref('dim_users') }} u
    cross join as_of o
    left join activity a on a.user_id = u.user_id
    left join listening l on l.user_id = u.user_id
    where u.is_current
)
select
    *,
    case
        when last_seen_ts is null
            or {{ dbt.datediff('last_seen_ts', 'as_of_ts', 'second') }} >= 7 * 86400 then 'dormant'
        when {{ dbt.datediff('coalesce(registration_ts, first_seen_ts)', 'as_of_ts', 'second') }} < 7 * 86400 then 'new'
        when plays_last_7 >= {{ var('segment_power_plays', 100) }} then 'power'
        when active_days_last_7 >= {{ var('segment_regular_days', 3) }} then 'regular'
        else 'casual'
    end as segment
from measured
