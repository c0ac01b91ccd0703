-- The ten most played artists of every period at every grain (minute, hour, day, week, month,
-- year), with their popularity score in the period (macros/grains.sql). Ties in plays are
-- broken by listeners, then by the artist's key.
{{ period_mart_config(unique_key=['grain', 'period_start', 'rank_in_period']) }}
with listens as (
    select event_ts, artist_key, user_id, duration_seconds from {{ ref('fact_listens') }}
),
per_artist as (
    {{ by_grain('listens', 'event_ts',
        "artist_key,
        count(*) as plays,
        count(distinct user_id) as listeners,
        sum(duration_seconds) / 3600.0 as stream_hours", ['artist_key']) }}
),
ranked as (
    select
        per_artist.*,
        {{ popularity_score('grain, period_start') }} as popularity_score,
        row_number() over (
            partition by grain, period_start order by plays desc, listeners desc, artist_key
        ) as rank_in_period
    from per_artist
)
select
    {{ surrogate_key(['r.grain', 'r.period_start', 'r.artist_key']) }} as row_key,
    r.grain,
    r.period_start,
    r.rank_in_period,
    a.artist,
    r.artist_key,
    r.plays,
    r.listeners,
    r.stream_hours,
    r.popularity_score
from ranked r
join {{ ref('dim_artists') }} a on a.artist_key = r.artist_key
where r.rank_in_period <= 10
