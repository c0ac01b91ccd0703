-- A user's profile over time (satellite of hub_user): name, gender and registration as the
-- user's events carry them, condensed per hour like sat_user_level (each hour's first
-- observation and every one whose hash diff differs from the one before it in that hour), so
-- an hour's rows depend on that hour's events only. Insert-only.
{{ config(materialized='incremental', unique_key='user_profile_key', incremental_strategy=insert_only_strategy(), on_schema_change='fail') }}
with observed as (
    select
        o.*,
        {{ hash_diff(['first_name', 'last_name', 'gender', 'registration_ts']) }} as hash_diff
    from ({{ user_observations() }}) o
),
ordered as (
    select
        observed.*,
        row_number() over (
            partition by user_id, {{ dbt.date_trunc('hour', 'event_ts') }} order by {{ observation_order() }}
        ) as n_in_hour,
        lag(hash_diff) over (
            partition by user_id, {{ dbt.date_trunc('hour', 'event_ts') }} order by {{ observation_order() }}
        ) as previous_hash_diff
    from observed
),
n as (
    select
        {{ hash_key(['user_id', 'event_ts', 'tie', 'item_in_session', 'record_source', 'event_id']) }} as user_profile_key,
        {{ user_hk('user_id') }} as user_hk,
        user_id,
        event_ts,
        tie,
        item_in_session,
        record_source,
        event_id,
        first_name,
        last_name,
        gender,
        registration_ts,
        hash_diff
    from ordered
    where n_in_hour = 1 or previous_hash_diff <> hash_diff
)
select n.*, {{ load_ts() }} as load_ts
from n
where {{ not_loaded('user_profile_key') }}
