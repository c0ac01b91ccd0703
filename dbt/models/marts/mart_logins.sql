-- How many users logged in, at every grain (minute, hour, day, week, month, year): successful
-- and failed log-in attempts and the distinct users who logged in, per period. Each build
-- recomputes, from every row of fact_auth in them, the periods its window falls in, so a late
-- hour is counted wherever it falls.
{{ period_mart_config(unique_key=['grain', 'period_start']) }}
with auth as (
    select event_ts, user_id, success from {{ ref('fact_auth') }}
),
periods as (
    {{ by_grain('auth', 'event_ts',
        "count(case when success then 1 end) as logins,
        count(case when not success then 1 end) as failed_logins,
        count(distinct case when success then user_id end) as users_logged_in") }}
)
select
    {{ surrogate_key(['grain', 'period_start']) }} as row_key,
    grain,
    period_start,
    logins,
    failed_logins,
    users_logged_in
from periods
