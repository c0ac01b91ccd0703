-- Songs played per hour of the day, per day.
select
    {{ surrogate_key(['f.date_key', 'f.hour_of_day']) }} as row_key,
    f.date_key,
    f.hour_of_day,
    t.part_of_day,
    count(*) as plays,
    count(distinct f.user_id) as listeners,
    sum(f.duration_seconds) / 3600.0 as stream_hours
from {{ ref('fact_listens') }} f
join {{ ref('dim_time') }} t on t.hour_of_day = f.hour_of_day
group by f.date_key, f.hour_of_day, t.part_of_day
