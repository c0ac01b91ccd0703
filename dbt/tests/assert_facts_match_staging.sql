-- Every staged event is in its fact table once. Checked when run without a window: a windowed
-- build holds only some hours. The condition is SQL, not Jinja, so that the test's refs are
-- the same whatever the window.
select 'listens' as fact, (select count(*) from {{ ref('fact_listens') }}) as facts, (select count(*) from {{ ref('stg_listen_events') }}) as staged
where {{ window_start() }} is null
  and (select count(*) from {{ ref('fact_listens') }}) <> (select count(*) from {{ ref('stg_listen_events') }})
union all
select 'page_views', (select count(*) from {{ ref('fact_page_views') }}), (select count(*) from {{ ref('stg_page_view_events') }})
where {{ window_start() }} is null
  and (select count(*) from {{ ref('fact_page_views') }}) <> (select count(*) from {{ ref('stg_page_view_events') }})
