-- A song's length (satellite of hub_song): one row per distinct length the song's plays carry.
-- Insert-only.
{{ config(materialized='incremental', unique_key='song_length_key', incremental_strategy=insert_only_strategy(), on_schema_change='fail') }}
with n as (
    select distinct
        {{ hash_key(['artist', 'song', 'duration_seconds']) }} as song_length_key,
        {{ hash_key(['artist', 'song']) }} as song_hk,
        duration_seconds,
        {{ hash_diff(['duration_seconds']) }} as hash_diff
    from {{ ref('stg_listen_events') }}
    where {{ vault_window('event_ts') }}
)
select n.*, {{ load_ts() }} as load_ts, 'listen_events' as record_source
from n
where {{ not_loaded('song_length_key') }}
