-- One row per page viewed: the star schema's view of link_page_view.
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
    page,
    method,
    http_status,
    auth
from {{ ref('link_page_view') }}
