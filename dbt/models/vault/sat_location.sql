-- A location's coordinates (satellite of hub_location): one row per distinct (lat, lon) its
-- events carry. Insert-only.
{{ config(materialized='incremental', unique_key='coordinates_key', incremental_strategy=insert_only_strategy(), on_schema_change='fail') }}
with seen as (
    {% for topic in ['auth_events', 'listen_events', 'page_view_events', 'status_change_events'] %}
    select city, state, zip, lat, lon
    from {{ ref('stg_' ~ topic) }}
    where city is not null and {{ vault_window('event_ts') }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),
n as (
    select distinct
        {{ hash_key(['city', 'state', 'zip', 'lat', 'lon']) }} as coordinates_key,
        {{ hash_key(['city', 'state', 'zip']) }} as location_hk,
        lat,
        lon,
        {{ hash_diff(['lat', 'lon']) }} as hash_diff
    from seen
)
select n.*, {{ load_ts() }} as load_ts, 'events' as record_source
from n
where {{ not_loaded('coordinates_key') }}
