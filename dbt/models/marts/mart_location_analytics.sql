-- Where users listen from, per day: plays, listeners and stream hours by city.
select
    f.date_key,
    l.state,
    l.city,
    max(l.lat) as lat,
    max(l.lon) as lon,
    count(*) as plays,
    count(distinct f.user_id) as listeners,
    sum(f.duration_seconds) / 3600.0 as stream_hours
from {{ ref('fact_listens') }} f
join {{ ref('dim_locations') }} l on l.location_key = f.location_key
group by f.date_key, l.state, l.city
