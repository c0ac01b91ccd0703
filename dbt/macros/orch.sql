{#
  Reports a model's row count to orch, which reads dbt's JSON log line by line: a post-hook
  (see dbt_project.yml) logs `orch:row_count <unique_id> <rows>` once the model is built, so
  that its materialization carries the count without orch opening the warehouse while dbt holds
  it (DuckDB admits one writing process). Like dagster-dbt's fetch_row_counts.
#}
{% macro orch_report_row_count() -%}
    {%- if execute and model.resource_type in ['model', 'seed', 'snapshot'] and config.get('materialized') != 'ephemeral' -%}
        {%- set result = run_query("select count(*) from " ~ this) -%}
        {%- do log("orch:row_count " ~ model.unique_id ~ " " ~ result.columns[0].values()[0], info=True) -%}
    {%- endif -%}
{%- endmacro %}
