-- Songs played: typed, cleaned, one row per event.
{% set relation = source('raw', 'listen_events') %}
with typed as (
    select
        {{ staged_event_id('listen_events') }} as event_id,
        {{ staged_event_columns(relation) }},
        nullif(artist, '') as artist,
        nullif(song, '') as song,
        cast(duration as {{ dbt.type_float() }}) as duration_seconds,
        _ingested_at as ingested_at
    from {{ relation }}
    where ts is not null and song is not null and artist is not null
)
select *
from typed
qualify row_number() over (partition by event_id order by ingested_at desc) = 1
