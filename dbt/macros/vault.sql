{#
  Data Vault 2.0 loading, cross-database. Every vault table is loaded insert-only: a build
  inserts the rows of its window (the partition window orch passes; every row on a first build
  or a full refresh) whose key the table does not hold yet. A row's key and content are a
  function of the events it comes from (hash keys of business keys, never of load order), so
  loading an hour twice, in any order, or after later hours, leaves the same rows.
#}

{# A hash key: the hash of business key columns (the same hash as surrogate_key). #}
{% macro hash_key(columns) -%}
    {{ surrogate_key(columns) }}
{%- endmacro %}

{# A satellite's hash diff: the hash of its descriptive columns. #}
{% macro hash_diff(columns) -%}
    {{ surrogate_key(columns) }}
{%- endmacro %}

{#
  The incremental strategy of an insert-only table: new rows are appended (DuckDB) or merged on
  their key (BigQuery, which has no append strategy; the rows are new, so the merge only
  inserts).
#}
{% macro insert_only_strategy() -%}
    {%- if target.type == 'bigquery' -%}merge{%- else -%}append{%- endif -%}
{%- endmacro %}

{#
  Staged rows a vault load reads: those of the build's window when the table exists, every row
  when it is built from nothing (a first build or --full-refresh), so that a full refresh never
  loses the hours outside its window.
#}
{% macro vault_window(column) -%}
    {%- if is_incremental() -%}{{ in_window(column) }}{%- else -%}1 = 1{%- endif -%}
{%- endmacro %}

{# Rows whose `key` the table does not hold yet (insert-only loading). #}
{% macro not_loaded(key, alias='n') -%}
    {%- if is_incremental() -%}
        not exists (select 1 from {{ this }} loaded where loaded.{{ key }} = {{ alias }}.{{ key }})
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{# When a vault row was loaded (DV2's load date): kept for lineage, never read by the marts. #}
{% macro load_ts() -%}
    cast({{ dbt.current_timestamp() }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{# The user hub's key of a user id column; null for guests. #}
{% macro user_hk(user_id) -%}
    case when {{ user_id }} is null then null else {{ hash_key([user_id]) }} end
{%- endmacro %}

{# The location hub's key; null when the event has no city. #}
{% macro location_hk(city, state, zip) -%}
    case when {{ city }} is null then null else {{ hash_key([city, state, zip]) }} end
{%- endmacro %}

{#
  What a user's events say about them, in the window: one row per event with a user id, in the
  order that decides a level history (time, then page views and plays before the status change
  they caused at the same instant, then position in the session, topic and event id, so that
  the order is total).
#}
{% macro user_observations() -%}
    {%- set topics = [('page_view_events', 0), ('listen_events', 0), ('status_change_events', 1)] -%}
    {%- for topic, tie in topics %}
    select
        user_id,
        event_ts,
        {{ tie }} as tie,
        item_in_session,
        '{{ topic }}' as record_source,
        event_id,
        level,
        first_name,
        last_name,
        gender,
        registration_ts
    from {{ ref('stg_' ~ topic) }}
    where user_id is not null and {{ vault_window('event_ts') }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
{%- endmacro %}

{# The order of a user's observations (see user_observations). #}
{% macro observation_order(prefix='') -%}
    {{ prefix }}event_ts, {{ prefix }}tie, {{ prefix }}item_in_session, {{ prefix }}record_source, {{ prefix }}event_id
{%- endmacro %}
