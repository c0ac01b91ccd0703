-- Songs, by title and artist, with their length.
select
    {{ surrogate_key(['artist', 'song']) }} as song_key,
    song,
    artist,
    {{ surrogate_key(['artist']) }} as artist_key,
    max(duration_seconds) as duration_seconds
from {{ ref('stg_listen_events') }}
group by song, artist
