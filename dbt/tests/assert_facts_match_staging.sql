-- Every staged event is in its fact table once (run without a window, or after all hours).
{% if var('window_start', none) is none %}
select 'listens' as fact, (select count(*) from {{ ref('fact_listens') }}) as facts, (select count(*) from {{ ref('stg_listen_events') }}) as staged
where (select count(*) from {{ ref('fact_listens') }}) <> (select count(*) from {{ ref('stg_listen_events') }})
union all
select 'page_views', (select count(*) from {{ ref('fact_page_views') }}), (select count(*) from {{ ref('stg_page_view_events') }})
where (select count(*) from {{ ref('fact_page_views') }}) <> (select count(*) from {{ ref('stg_page_view_events') }})
{% else %}
select 1 as nothing where 1 = 0
{% endif %}
