-- Where users listen from.
with coordinates as (
    select location_hk, max(lat) as lat, max(lon) as lon
    from {{ ref('sat_location') }}
    group by location_hk
)
select
    h.location_hk as location_key,
    h.city,
    h.state,
    h.zip,
    c.lat,
    c.lon
from {{ ref('hub_location') }} h
left join coordinates c on c.location_hk = h.location_hk
