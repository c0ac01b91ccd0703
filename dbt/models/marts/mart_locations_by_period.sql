-- Where users listen from, at every grain (minute, hour, day, week, month, year): plays,
-- listeners and stream hours per state and period (mart_location_analytics has cities, by
-- day). States keep the minute grain small: at most one row per state and minute.
{{ period_mart_config(unique_key='row_key') }}
with listens as (
    select f.event_ts, l.state, f.user_id, f.duration_seconds
    from {{ ref('fact_listens') }} f
    join {{ ref('dim_locations') }} l on l.location_key = f.location_key
),
periods as (
    {{ by_grain('listens', 'event_ts',
        "state,
        count(*) as plays,
        count(distinct user_id) as listeners,
        sum(duration_seconds) / 3600.0 as stream_hours", ['state']) }}
)
select
    {{ surrogate_key(['grain', 'period_start', 'state']) }} as row_key,
    grain,
    period_start,
    state,
    plays,
    listeners,
    stream_hours
from periods
