-- Users with their level history (a slowly changing dimension, type 2): one row per user and
-- level period, from the first event at that level until the next change, derived at read time
-- from the vault's level satellite (rebuilt whole by every build, so a late hour that moves a
-- period is reflected at once) with the profile in force when the period began.
-- `user_key` is the durable key the facts carry (hash of user_id); `user_period_key`
-- (hash of user_id and valid_from) identifies a period and is stored by no fact.
-- Events at the same instant are ordered page views and plays first, then the status change
-- they caused (the `Submit Upgrade` page view and its status change share a timestamp but not
-- always a level).
{{ config(meta={'orch_why': "level history: an hour loaded late can move a period's start or end, so the periods are derived from every hour of the level satellite by each build"}) }}
with marked as (
    select
        user_hk,
        level,
        case
            when lag(level) over (partition by user_id order by {{ observation_order() }}) = level then 0
            else 1
        end as starts_period,
        user_id,
        {{ observation_order() }}
    from {{ ref('sat_user_level') }}
),
numbered as (
    select
        *,
        sum(starts_period) over (
            partition by user_id order by {{ observation_order() }}
            rows between unbounded preceding and current row
        ) as period
    from marked
),
periods as (
    select
        user_id,
        min(user_hk) as user_hk,
        period,
        min(level) as level,
        min(event_ts) as valid_from
    from numbered
    group by user_id, period
),
-- A period that another replaces at the same instant lasted no time: keep the later one.
lasting as (
    select *
    from periods
    where 1 = 1  -- BigQuery wants a WHERE beside QUALIFY
    qualify row_number() over (partition by user_id, valid_from order by period desc) = 1
),
-- The profile in force when the period began: the user's last profile observation at or
-- before it (every event carries the profile, so there is one).
profiled as (
    select
        p.user_id,
        p.user_hk,
        p.level,
        p.valid_from,
        s.first_name,
        s.last_name,
        s.gender,
        s.registration_ts
    from lasting p
    join {{ ref('sat_user_profile') }} s on s.user_id = p.user_id and s.event_ts <= p.valid_from
    where 1 = 1
    qualify row_number() over (
        partition by p.user_id, p.valid_from
        order by s.event_ts desc, s.tie desc, s.item_in_session desc, s.record_source desc, s.event_id desc
    ) = 1
)
select
    {{ hash_key(['user_id', 'valid_from']) }} as user_period_key,
    user_hk as user_key,
    user_id,
    level,
    first_name,
    last_name,
    gender,
    registration_ts,
    valid_from,
    lead(valid_from) over (partition by user_id order by valid_from) as valid_to,
    case when lead(valid_from) over (partition by user_id order by valid_from) is null then true else false end as is_current
from profiled
