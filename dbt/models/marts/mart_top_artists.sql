-- Artists by plays per day, ranked, with a
-- popularity score (macros/grains.sql: 60 % plays, 40 % listeners, relative to the day's leader).
with plays as (
    select f.date_key, f.artist_key, count(*) as plays, count(distinct f.user_id) as listeners,
        sum(f.duration_seconds) / 3600.0 as stream_hours
    from {{ ref('fact_listens') }} f
    group by f.date_key, f.artist_key
)
select
    {{ surrogate_key(['p.date_key', 'p.artist_key']) }} as row_key,
    p.date_key,
    a.artist,
    p.artist_key,
    p.plays,
    p.listeners,
    p.stream_hours,
    rank() over (partition by p.date_key order by p.plays desc) as rank_in_day,
    {{ popularity_score('p.date_key') }} as popularity_score
from plays p
join {{ ref('dim_artists') }} a on a.artist_key = p.artist_key
