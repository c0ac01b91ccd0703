{# Epoch milliseconds to a timestamp, per adapter. #}
{% macro epoch_ms_to_timestamp(expr) -%}
    {{ return(adapter.dispatch('epoch_ms_to_timestamp')(expr)) }}
{%- endmacro %}

{% macro default__epoch_ms_to_timestamp(expr) -%}
    to_timestamp({{ expr }} / 1000.0)
{%- endmacro %}

{% macro duckdb__epoch_ms_to_timestamp(expr) -%}
    epoch_ms(cast({{ expr }} as bigint))
{%- endmacro %}

{% macro bigquery__epoch_ms_to_timestamp(expr) -%}
    timestamp_millis(cast({{ expr }} as int64))
{%- endmacro %}

{#
  A raw column as a timestamp, whether the load kept eventsim's epoch milliseconds (a number)
  or typed it already (a timestamp): the column's type is read from the warehouse.
#}
{% macro as_timestamp(relation, column) -%}
    {%- set found = namespace(numeric=false) -%}
    {%- if execute -%}
        {%- for c in adapter.get_columns_in_relation(relation) -%}
            {%- if c.name | lower == column | lower and c.is_number() -%}{%- set found.numeric = true -%}{%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if found.numeric -%}{{ epoch_ms_to_timestamp(column) }}{%- else -%}cast({{ column }} as {{ dbt.type_timestamp() }}){%- endif -%}
{%- endmacro %}

{# The columns every staged event has: ids, time, user, location, client. #}
{% macro staged_event_columns(relation) -%}
    {{ as_timestamp(relation, 'ts') }} as event_ts,
    cast(sessionId as {{ dbt.type_bigint() }}) as session_id,
    cast(itemInSession as {{ dbt.type_int() }}) as item_in_session,
    nullif(cast(userId as {{ dbt.type_string() }}), '') as user_id,
    nullif(firstName, '') as first_name,
    nullif(lastName, '') as last_name,
    nullif(gender, '') as gender,
    lower(level) as level,
    {{ as_timestamp(relation, 'registration') }} as registration_ts,
    nullif(city, '') as city,
    nullif(state, '') as state,
    nullif(cast(zip as {{ dbt.type_string() }}), '') as zip,
    cast(lat as {{ dbt.type_float() }}) as lat,
    cast(lon as {{ dbt.type_float() }}) as lon,
    userAgent as user_agent
{%- endmacro %}

{# The event's id: the producer's, or one derived from what identifies an event. #}
{% macro staged_event_id(topic) -%}
    coalesce(
        cast(_event_id as {{ dbt.type_string() }}),
        {{ surrogate_key(["'" ~ topic ~ "'", 'sessionId', 'itemInSession', 'ts', 'userId']) }}
    )
{%- endmacro %}
