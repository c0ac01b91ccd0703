-- One row per log-in attempt: the star schema's view of link_login.
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
    level,
    success
from {{ ref('link_login') }}
