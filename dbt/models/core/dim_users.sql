-- Users with their level history (a slowly changing dimension, type 2): one row per user and
-- level period, from the first event at that level until the next change. Events at the same
-- instant are ordered page views and plays first, then the status change they caused (the
-- `Submit Upgrade` page view and its status change share a timestamp but not always a level).
with observed as (
    select user_id, event_ts, 0 as tie, item_in_session, level, first_name, last_name, gender, registration_ts
    from {{ ref('stg_page_view_events') }}
    where user_id is not null
    union all
    select user_id, event_ts, 0 as tie, item_in_session, level, first_name, last_name, gender, registration_ts
    from {{ ref('stg_listen_events') }}
    where user_id is not null
    union all
    select user_id, event_ts, 1 as tie, item_in_session, level, first_name, last_name, gender, registration_ts
    from {{ ref('stg_status_change_events') }}
    where user_id is not null
),
marked as (
    select
        *,
        case
            when lag(level) over (partition by user_id order by event_ts, tie, item_in_session) = level then 0
            else 1
        end as starts_period
    from observed
),
numbered as (
    select
        *,
        sum(starts_period) over (
            partition by user_id order by event_ts, tie, item_in_session
            rows between unbounded preceding and current row
        ) as period
    from marked
),
periods as (
    select
        user_id,
        period,
        min(level) as level,
        min(event_ts) as valid_from,
        max(first_name) as first_name,
        max(last_name) as last_name,
        max(gender) as gender,
        min(registration_ts) as registration_ts
    from numbered
    group by user_id, period
),
-- A period that another replaces at the same instant lasted no time: keep the later one.
lasting as (
    select *
    from periods
    where 1 = 1  -- BigQuery wants a WHERE beside QUALIFY
    qualify row_number() over (partition by user_id, valid_from order by period desc) = 1
)
select
    {{ surrogate_key(['user_id', 'valid_from']) }} as user_key,
    user_id,
    level,
    first_name,
    last_name,
    gender,
    registration_ts,
    valid_from,
    lead(valid_from) over (partition by user_id order by valid_from) as valid_to,
    case when lead(valid_from) over (partition by user_id order by valid_from) is null then true else false end as is_current
from lasting
