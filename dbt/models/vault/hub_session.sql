-- Hub of sessions: one row per business key (session id and user id; a guest's user id is
-- null), keyed by its hash. A session spanning hours has one key whichever hour comes first.
-- Insert-only.
{{ config(materialized='incremental', unique_key='session_hk', incremental_strategy=insert_only_strategy(), on_schema_change='fail') }}
with seen as (
    {% for topic in ['auth_events', 'listen_events', 'page_view_events', 'status_change_events'] %}
    select session_id, user_id, '{{ topic }}' as record_source
    from {{ ref('stg_' ~ topic) }}
    where {{ vault_window('event_ts') }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),
n as (
    select {{ hash_key(['session_id', 'user_id']) }} as session_hk, session_id, user_id, min(record_source) as record_source
    from seen
    group by session_id, user_id
)
select session_hk, session_id, user_id, {{ load_ts() }} as load_ts, record_source
from n
where {{ not_loaded('session_hk') }}
