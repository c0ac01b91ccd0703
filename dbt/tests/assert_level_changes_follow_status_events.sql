-- A user's level changes only through a subscription change (upgrade, downgrade, cancel): every
-- level period after a user's first is preceded by a status change event of that user since the
-- previous period began. (Which level the event itself carries differs between eventsim
-- versions, so it is not compared.)
-- A warning, not an error: it holds once the lake is complete, but while hours are still
-- arriving a level change can be loaded before the hour holding its status change (a late
-- hour, a late file), and a run must not fail for what a later one will bring. tests/arrival.rs
-- asserts it on the complete warehouse of every scenario.
{{ config(severity='warn') }}
with periods as (
    select
        user_id,
        valid_from,
        lag(valid_from) over (partition by user_id order by valid_from) as previous_from
    from {{ ref('dim_users') }}
)
select p.*
from periods p
where p.previous_from is not null
  and not exists (
      select 1
      from {{ ref('stg_status_change_events') }} s
      where s.user_id = p.user_id
        and s.event_ts >= p.previous_from
        and s.event_ts <= p.valid_from
  )
