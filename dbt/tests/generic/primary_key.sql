{#
  A key: every row has one, and no two rows share it (dbt's `unique` and `not_null` in one
  query, so a build runs one test per key instead of two). Fails with the offending values.
#}
{% test primary_key(model, column_name) %}
select {{ column_name }} as key_value, count(*) as rows_with_it
from {{ model }}
group by {{ column_name }}
having count(*) > 1 or {{ column_name }} is null
{% endtest %}
