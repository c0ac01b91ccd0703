-- A user's level over time (satellite of hub_user): the level the user's events carry, condensed
-- per hour (each hour's first observation of the user and every one where the level changes
-- from the observation before it in that hour). Which rows an hour contributes depends on that
-- hour's events only; the level history (dim_users) is derived from this table at read time,
-- and is the same as if derived from every event: a change of level is either in the same hour
-- as the observation before it or the first of its hour. Insert-only: an hour loaded again (with
-- late events) adds the rows it now contributes and keeps the older ones, which are real
-- observations that change no period.
{{ config(materialized='incremental', unique_key='user_level_key', incremental_strategy=insert_only_strategy(), on_schema_change='fail') }}
with observed as (
    {{ user_observations() }}
),
ordered as (
    select
        observed.*,
        row_number() over (
            partition by user_id, {{ dbt.date_trunc('hour', 'event_ts') }} order by {{ observation_order() }}
        ) as n_in_hour,
        lag(level) over (
            partition by user_id, {{ dbt.date_trunc('hour', 'event_ts') }} order by {{ observation_order() }}
        ) as previous_level
    from observed
),
n as (
    select
        {{ hash_key(['user_id', 'event_ts', 'tie', 'item_in_session', 'record_source', 'event_id']) }} as user_level_key,
        {{ user_hk('user_id') }} as user_hk,
        user_id,
        event_ts,
        tie,
        item_in_session,
        record_source,
        event_id,
        level,
        {{ hash_diff(['level']) }} as hash_diff
    from ordered
    where n_in_hour = 1 or coalesce(previous_level, '~') <> coalesce(level, '~')
)
select n.*, {{ load_ts() }} as load_ts
from n
where {{ not_loaded('user_level_key') }}
