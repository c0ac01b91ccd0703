-- Gender and level composition per day: of all active users, and of the listeners of each of
-- the day's ten most played artists.
with active as (
    select distinct f.date_key, f.user_id, f.level
    from {{ ref('fact_page_views') }} f
    where f.user_id is not null
),
users as (
    select a.date_key, a.user_id, a.level, u.gender
    from active a
    join {{ ref('dim_users') }} u on u.user_id = a.user_id and u.is_current
),
top_artists as (
    select date_key, artist_key, artist from {{ ref('mart_top_artists') }} where rank_in_day <= 10
),
artist_listeners as (
    select distinct f.date_key, t.artist, f.user_id, f.level
    from {{ ref('fact_listens') }} f
    join top_artists t on t.date_key = f.date_key and t.artist_key = f.artist_key
    where f.user_id is not null
),
artist_users as (
    select l.date_key, l.artist, l.user_id, l.level, u.gender
    from artist_listeners l
    join {{ ref('dim_users') }} u on u.user_id = l.user_id and u.is_current
)
select 'all_active_users' as segment, date_key, cast(null as {{ dbt.type_string() }}) as artist,
    gender, level, count(distinct user_id) as users
from users
group by date_key, gender, level
union all
select 'top_artist_listeners' as segment, date_key, artist, gender, level, count(distinct user_id) as users
from artist_users
group by date_key, artist, gender, level
