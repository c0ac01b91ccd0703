-- A day's stream hours are the sum of its hours', and both match the listens' durations.
with days as (
    select cast(period_start as date) as d, stream_hours from {{ ref('mart_active_users') }} where grain = 'day'
),
hours as (
    select cast(period_start as date) as d, sum(stream_hours) as stream_hours
    from {{ ref('mart_active_users') }} where grain = 'hour' group by 1
),
facts as (
    select date_key as d, sum(duration_seconds) / 3600.0 as stream_hours from {{ ref('fact_listens') }}
    where user_id is not null group by 1
)
select days.d, days.stream_hours as day_hours, hours.stream_hours as hour_hours, facts.stream_hours as fact_hours
from days
join hours on hours.d = days.d
left join facts on facts.d = days.d
where abs(days.stream_hours - hours.stream_hours) > 0.0001
   or abs(days.stream_hours - coalesce(facts.stream_hours, 0)) > 0.0001
