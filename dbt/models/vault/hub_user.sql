-- Hub of users: one row per business key (user_id), keyed by its hash. Insert-only.
{{ config(materialized='incremental', unique_key='user_hk', incremental_strategy=insert_only_strategy(), on_schema_change='fail') }}
with seen as (
    {% for topic in ['auth_events', 'listen_events', 'page_view_events', 'status_change_events'] %}
    select user_id, '{{ topic }}' as record_source
    from {{ ref('stg_' ~ topic) }}
    where user_id is not null and {{ vault_window('event_ts') }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),
n as (
    select {{ hash_key(['user_id']) }} as user_hk, user_id, min(record_source) as record_source
    from seen
    group by user_id
)
select user_hk, user_id, {{ load_ts() }} as load_ts, record_source
from n
where {{ not_loaded('user_hk') }}
