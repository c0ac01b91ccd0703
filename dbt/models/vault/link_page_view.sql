-- A page viewed (a transactional link): one row per page view event, keyed by the hash of its
-- event id, with the hub keys it links (user, session, location) and what the event says.
-- Insert-only.
{{ config(materialized='incremental', unique_key='page_view_hk', incremental_strategy=insert_only_strategy(), on_schema_change='fail') }}
with n as (
    select
        {{ hash_key(['event_id']) }} as page_view_hk,
        event_id,
        {{ user_hk('user_id') }} as user_hk,
        {{ hash_key(['session_id', 'user_id']) }} as session_hk,
        {{ location_hk('city', 'state', 'zip') }} as location_hk,
        event_ts,
        user_id,
        session_id,
        item_in_session,
        level,
        page,
        method,
        http_status,
        auth
    from {{ ref('stg_page_view_events') }}
    where {{ vault_window('event_ts') }}
)
select n.*, {{ load_ts() }} as load_ts, 'page_view_events' as record_source
from n
where {{ not_loaded('page_view_hk') }}
