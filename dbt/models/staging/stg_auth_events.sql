-- Log-in attempts: typed, cleaned, one row per event.
{% set relation = source('raw', 'auth_events') %}
with typed as (
    select
        {{ staged_event_id('auth_events') }} as event_id,
        {{ staged_event_columns(relation) }},
        cast(success as {{ dbt.type_boolean() }}) as success,
        _ingested_at as ingested_at
    from {{ relation }}
    where ts is not null
)
select *
from typed
qualify row_number() over (partition by event_id order by ingested_at desc) = 1
