-- Songs per session and per user, per day.
with sessions as (
    select date_key, session_id, user_id, count(*) as songs,
        {{ dbt.datediff('min(event_ts)', 'max(event_ts)', 'second') }} as span_seconds
    from {{ ref('fact_listens') }}
    group by date_key, session_id, user_id
),
per_user as (
    select date_key, user_id, sum(songs) as songs
    from sessions
    where user_id is not null
    group by date_key, user_id
)
select
    s.date_key,
    count(*) as sessions,
    cast(sum(s.songs) as {{ dbt.type_bigint() }}) as plays,
    avg(s.songs * 1.0) as songs_per_session,
    avg(s.span_seconds / 60.0) as minutes_per_session,
    max(u.users) as listeners,
    max(u.songs_per_user) as songs_per_user
from sessions s
join (
    select date_key, count(*) as users, avg(songs * 1.0) as songs_per_user from per_user group by date_key
) u on u.date_key = s.date_key
group by s.date_key
