-- A log-in attempt (a transactional link): one row per auth event, keyed by the hash of its
-- event id, with the hub keys it links (user, session, location). Insert-only.
{{ config(materialized='incremental', unique_key='login_hk', incremental_strategy=insert_only_strategy(), on_schema_change='fail') }}
with n as (
    select
        {{ hash_key(['event_id']) }} as login_hk,
        event_id,
        {{ user_hk('user_id') }} as user_hk,
        {{ hash_key(['session_id', 'user_id']) }} as session_hk,
        {{ location_hk('city', 'state', 'zip') }} as location_hk,
        event_ts,
        user_id,
        session_id,
        level,
        success
    from {{ ref('stg_auth_events') }}
    where {{ vault_window('event_ts') }}
)
select n.*, {{ load_ts() }} as load_ts, 'auth_events' as record_source
from n
where {{ not_loaded('login_hk') }}
