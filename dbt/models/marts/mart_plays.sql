-- Songs played at every grain (minute, hour, day, week, month, year): plays, listeners,
-- sessions with a play and stream hours, per period.
{{ period_mart_config(unique_key=['grain', 'period_start']) }}
with listens as (
    select event_ts, user_id, session_key, duration_seconds from {{ ref('fact_listens') }}
),
periods as (
    {{ by_grain('listens', 'event_ts',
        "count(*) as plays,
        count(distinct user_id) as listeners,
        count(distinct session_key) as sessions,
        sum(duration_seconds) / 3600.0 as stream_hours") }}
)
select
    {{ surrogate_key(['grain', 'period_start']) }} as row_key,
    grain,
    period_start,
    plays,
    listeners,
    sessions,
    stream_hours
from periods
