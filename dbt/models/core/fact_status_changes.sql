-- One row per subscription change (the level after it): the star schema's view of
-- link_level_change.
{{ config(materialized='view') }}
select
    event_id,
    event_ts,
    cast(event_ts as date) as date_key,
    {{ hour_of('event_ts') }} as hour_of_day,
    user_id,
    user_hk as user_key,
    location_hk as location_key,
    session_hk as session_key,
    session_id,
    level
from {{ ref('link_level_change') }}
