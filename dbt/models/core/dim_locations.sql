-- Where users listen from.
with seen as (
    select city, state, zip, lat, lon from {{ ref('stg_listen_events') }}
    union all
    select city, state, zip, lat, lon from {{ ref('stg_page_view_events') }}
)
select
    {{ surrogate_key(['city', 'state', 'zip']) }} as location_key,
    city,
    state,
    zip,
    max(lat) as lat,
    max(lon) as lon
from seen
where city is not null
group by city, state, zip
