-- A user's level changes only through a subscription change (upgrade, downgrade, cancel): every
-- level period after a user's first starts at a status change event at that level.
with later_periods as (
    select user_id, level, valid_from
    from (
        select *, row_number() over (partition by user_id order by valid_from) as n
        from {{ ref('dim_users') }}
    ) p
    where n > 1
)
select p.*
from later_periods p
left join {{ ref('stg_status_change_events') }} s
    on s.user_id = p.user_id and s.level = p.level and s.event_ts <= p.valid_from
where s.event_id is null
