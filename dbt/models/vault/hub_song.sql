-- Hub of songs: one row per business key (artist and title), keyed by its hash. Insert-only.
{{ config(materialized='incremental', unique_key='song_hk', incremental_strategy=insert_only_strategy(), on_schema_change='fail') }}
with n as (
    select distinct {{ hash_key(['artist', 'song']) }} as song_hk, artist, song
    from {{ ref('stg_listen_events') }}
    where {{ vault_window('event_ts') }}
)
select song_hk, artist, song, {{ load_ts() }} as load_ts, 'listen_events' as record_source
from n
where {{ not_loaded('song_hk') }}
