-- Hub of locations: one row per business key (city, state, zip), keyed by its hash. Insert-only.
{{ config(materialized='incremental', unique_key='location_hk', incremental_strategy=insert_only_strategy(), on_schema_change='fail') }}
with seen as (
    {% for topic in ['auth_events', 'listen_events', 'page_view_events', 'status_change_events'] %}
    select city, state, zip, '{{ topic }}' as record_source
    from {{ ref('stg_' ~ topic) }}
    where city is not null and {{ vault_window('event_ts') }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),
n as (
    select {{ hash_key(['city', 'state', 'zip']) }} as location_hk, city, state, zip, min(record_source) as record_source
    from seen
    group by city, state, zip
)
select location_hk, city, state, zip, {{ load_ts() }} as load_ts, record_source
from n
where {{ not_loaded('location_hk') }}
