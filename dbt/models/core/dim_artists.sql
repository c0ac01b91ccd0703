-- Artists heard: the artist hub.
select artist_hk as artist_key, artist
from {{ ref('hub_artist') }}
