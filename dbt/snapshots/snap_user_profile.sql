{#
  The user profile's history as dbt snapshots keep it (type 2, check strategy): one row per
  user and version of their current profile and level, with dbt_valid_from/dbt_valid_to the
  build times between which it held. Unlike dim_users, whose periods come from the events
  themselves and so do not depend on load order, this table records what each build saw: it is
  history as observed, for auditing what the warehouse said when. It lives in its own schema
  (`snapshots`) and is not part of the order-independent marts.
#}
{% snapshot snap_user_profile %}
{{ config(schema='snapshots', unique_key='user_id', strategy='check',
    check_cols=['first_name', 'last_name', 'gender', 'level', 'registration_ts']) }}
select user_id, user_key, first_name, last_name, gender, level, registration_ts
from {{ ref('dim_users') }}
where is_current
{% endsnapshot %}
