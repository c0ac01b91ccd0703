-- The ten most played songs of every period at every grain (minute, hour, day, week, month,
-- year), with their popularity score in the period (macros/grains.sql: 60 % plays, 40 %
-- listeners, relative to the period's leader). Ties in plays are broken by listeners, then by
-- the song's key, so the ranking is the same whatever order the hours were loaded in.
{{ period_mart_config(unique_key=['grain', 'period_start', 'rank_in_period']) }}
with listens as (
    select event_ts, song_key, user_id, duration_seconds from {{ ref('fact_listens') }}
),
per_song as (
    {{ by_grain('listens', 'event_ts',
        "song_key,
        count(*) as plays,
        count(distinct user_id) as listeners,
        sum(duration_seconds) / 3600.0 as stream_hours", ['song_key']) }}
),
ranked as (
    select
        per_song.*,
        {{ popularity_score('grain, period_start') }} as popularity_score,
        row_number() over (
            partition by grain, period_start order by plays desc, listeners desc, song_key
        ) as rank_in_period
    from per_song
)
select
    {{ surrogate_key(['r.grain', 'r.period_start', 'r.song_key']) }} as row_key,
    r.grain,
    r.period_start,
    r.rank_in_period,
    s.song,
    s.artist,
    r.song_key,
    r.plays,
    r.listeners,
    r.stream_hours,
    r.popularity_score
from ranked r
join {{ ref('dim_songs') }} s on s.song_key = r.song_key
where r.rank_in_period <= 10
