-- Songs, by title and artist, with their length.
with lengths as (
    select song_hk, max(duration_seconds) as duration_seconds
    from {{ ref('sat_song') }}
    group by song_hk
)
select
    h.song_hk as song_key,
    h.song,
    h.artist,
    {{ hash_key(['h.artist']) }} as artist_key,
    l.duration_seconds
from {{ ref('hub_song') }} h
left join lengths l on l.song_hk = h.song_hk
