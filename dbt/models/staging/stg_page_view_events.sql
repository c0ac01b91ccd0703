-- Pages viewed: typed, cleaned, one row per event.
{% set relation = source('raw', 'page_view_events') %}
with typed as (
    select
        {{ staged_event_id('page_view_events') }} as event_id,
        {{ staged_event_columns(relation) }},
        page,
        upper(method) as method,
        cast(status as {{ dbt.type_int() }}) as http_status,
        auth,
        nullif(artist, '') as artist,
        nullif(song, '') as song,
        cast(duration as {{ dbt.type_float() }}) as duration_seconds,
        _ingested_at as ingested_at
    from {{ relation }}
    where ts is not null and page is not null
)
select *
from typed
qualify row_number() over (partition by event_id order by ingested_at desc) = 1
