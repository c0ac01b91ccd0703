-- Hub of artists: one row per business key (the artist's name), keyed by its hash. Insert-only.
{{ config(materialized='incremental', unique_key='artist_hk', incremental_strategy=insert_only_strategy(), on_schema_change='fail') }}
with n as (
    select distinct {{ hash_key(['artist']) }} as artist_hk, artist
    from {{ ref('stg_listen_events') }}
    where {{ vault_window('event_ts') }}
)
select artist_hk, artist, {{ load_ts() }} as load_ts, 'listen_events' as record_source
from n
where {{ not_loaded('artist_hk') }}
