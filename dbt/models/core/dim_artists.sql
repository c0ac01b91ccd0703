-- Artists heard or viewed.
select distinct
    {{ surrogate_key(['artist']) }} as artist_key,
    artist
from {{ ref('stg_listen_events') }}
