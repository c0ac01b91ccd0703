-- Every play is in mart_top_songs: its daily plays add up to the day's listens.
with mart as (select date_key, sum(plays) as plays from {{ ref('mart_top_songs') }} group by date_key),
facts as (select date_key, count(*) as plays from {{ ref('fact_listens') }} group by date_key)
select facts.date_key, facts.plays as fact_plays, mart.plays as mart_plays
from facts
left join mart on mart.date_key = facts.date_key
where mart.plays is null or mart.plays <> facts.plays
