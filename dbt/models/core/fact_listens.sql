-- One row per song played: the star schema's view of link_listen. Every key is a hash of a
-- business key (user_key = hash(user_id), song_key = hash(artist, song), ...), and the level is
-- the one the event carries, so a row never goes stale when other hours arrive.
{{ config(materialized='view') }}
select
    event_id,
    event_ts,
    cast(event_ts as date) as date_key,
    {{ hour_of('event_ts') }} as hour_of_day,
    user_id,
    user_hk as user_key,
    song_hk as song_key,
    artist_hk as artist_key,
    location_hk as location_key,
    session_hk as session_key,
    session_id,
    level,
    duration_seconds
from {{ ref('link_listen') }}
