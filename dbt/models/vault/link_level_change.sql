-- A subscription change (a transactional link): one row per status change event (upgrade,
-- downgrade, cancellation), keyed by the hash of its event id, with the user, session and
-- location it links and the level the event carries. Insert-only.
{{ config(materialized='incremental', unique_key='level_change_hk', incremental_strategy=insert_only_strategy(), on_schema_change='fail') }}
with n as (
    select
        {{ hash_key(['event_id']) }} as level_change_hk,
        event_id,
        {{ user_hk('user_id') }} as user_hk,
        {{ hash_key(['session_id', 'user_id']) }} as session_hk,
        {{ location_hk('city', 'state', 'zip') }} as location_hk,
        event_ts,
        user_id,
        session_id,
        item_in_session,
        level,
        auth
    from {{ ref('stg_status_change_events') }}
    where {{ vault_window('event_ts') }}
)
select n.*, {{ load_ts() }} as load_ts, 'status_change_events' as record_source
from n
where {{ not_loaded('level_change_hk') }}
