-- Subscription changes (upgrades, downgrades, cancellations), with the level the event carries.
{% set relation = source('raw', 'status_change_events') %}
with typed as (
    select
        {{ staged_event_id('status_change_events') }} as event_id,
        {{ staged_event_columns(relation) }},
        auth,
        _ingested_at as ingested_at
    from {{ relation }}
    where ts is not null
)
select *
from typed
qualify row_number() over (partition by event_id order by ingested_at desc) = 1
