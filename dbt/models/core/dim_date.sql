-- Calendar days that hold events.
-- (`union all` then `distinct`: BigQuery has no bare `union`.)
with days as (
    select distinct date_day from (
        select cast(event_ts as date) as date_day from {{ ref('link_page_view') }}
        union all
        select cast(event_ts as date) as date_day from {{ ref('link_listen') }}
    ) seen
)
select
    date_day as date_key,
    cast(extract(year from date_day) as {{ dbt.type_int() }}) as year,
    cast(extract(month from date_day) as {{ dbt.type_int() }}) as month,
    cast(extract(day from date_day) as {{ dbt.type_int() }}) as day_of_month,
    {{ iso_day_of_week('date_day') }} as iso_day_of_week,
    case when {{ iso_day_of_week('date_day') }} in (6, 7) then true else false end as is_weekend
from days
