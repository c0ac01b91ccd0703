-- A song played (a transactional link): one row per listen event, keyed by the hash of its
-- event id, with the hub keys it links (user, song, artist, session, location) and what the
-- event itself says (time, level, duration). A row is a function of its own event only.
-- Insert-only.
{{ config(materialized='incremental', unique_key='listen_hk', incremental_strategy=insert_only_strategy(), on_schema_change='fail') }}
with n as (
    select
        {{ hash_key(['event_id']) }} as listen_hk,
        event_id,
        {{ user_hk('user_id') }} as user_hk,
        {{ hash_key(['artist', 'song']) }} as song_hk,
        {{ hash_key(['artist']) }} as artist_hk,
        {{ hash_key(['session_id', 'user_id']) }} as session_hk,
        {{ location_hk('city', 'state', 'zip') }} as location_hk,
        event_ts,
        user_id,
        session_id,
        item_in_session,
        level,
        duration_seconds
    from {{ ref('stg_listen_events') }}
    where {{ vault_window('event_ts') }}
)
select n.*, {{ load_ts() }} as load_ts, 'listen_events' as record_source
from n
where {{ not_loaded('listen_hk') }}
