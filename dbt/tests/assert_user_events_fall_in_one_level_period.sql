-- Stricter than a relationship to dim_users: every event of a user (play, page view, status
-- change) falls in exactly one of the user's level periods, whatever order its hour was loaded in.
with events as (
    select event_id, 'listen' as kind, user_id, event_ts from {{ ref('fact_listens') }} where user_id is not null
    union all
    select event_id, 'page_view', user_id, event_ts from {{ ref('fact_page_views') }} where user_id is not null
    union all
    select event_id, 'status_change', user_id, event_ts from {{ ref('fact_status_changes') }}
),
matched as (
    select e.event_id, e.kind, count(u.user_period_key) as periods
    from events e
    left join {{ ref('dim_users') }} u
        on u.user_id = e.user_id
        and e.event_ts >= u.valid_from
        and (u.valid_to is null or e.event_ts < u.valid_to)
    group by e.event_id, e.kind
)
select * from matched where periods <> 1
