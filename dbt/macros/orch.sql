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

{#
  Tells orch what a build rebuilt and why (a post-hook, see dbt_project.yml): logs
  `orch:meta <unique_id> <key> <text>` lines, which orch attaches to the model's
  materialization (shown by `orch runs show` and the run page).
  - Vault tables (incremental): `orch/scope` `window`, what the load did, and, when the vault
    already holds events after the window (an hour that arrived after later hours were loaded),
    `orch/later_rows` with how many, and a line in the step's log saying what that means.
  - The marts by period (incremental, macros/grains.sql): `orch/scope` `periods`, and which
    periods the build recomputed.
  - Everything else (the star schema, the other marts): `orch/scope` `all hours`, rebuilt from the
    whole vault by every build, with the reason (the model's `meta.orch_why`, or the default).
#}
{% macro orch_report_scope() -%}
    {%- if execute and model.resource_type == 'model' -%}
        {%- set materialized = config.get('materialized') -%}
        {%- set start = window_bound('window_start') -%}
        {%- set end = window_bound('window_end') -%}
        {%- if materialized == 'incremental' and config.get('meta', {}).get('orch_scope') == 'periods' -%}
            {%- do log("orch:meta " ~ model.unique_id ~ " orch/scope periods", info=True) -%}
            {%- if start is not none and end is not none -%}
                {%- do log("orch:meta " ~ model.unique_id ~ " orch/rebuilt the periods, at every grain from minute to year, that hold " ~ start ~ " to " ~ end ~ ": each recomputed from all of its rows, later hours included", info=True) -%}
            {%- else -%}
                {%- do log("orch:meta " ~ model.unique_id ~ " orch/rebuilt every period (no window)", info=True) -%}
            {%- endif -%}
        {%- elif materialized == 'incremental' -%}
            {%- do log("orch:meta " ~ model.unique_id ~ " orch/scope window", info=True) -%}
            {%- if start is not none and end is not none -%}
                {%- do log("orch:meta " ~ model.unique_id ~ " orch/rebuilt insert-only load of " ~ start ~ " to " ~ end ~ ": keys not yet in the vault added, no row of another hour changed", info=True) -%}
                {%- if 'event_ts' in (adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list) -%}
                    {%- set later = run_query("select count(*) from " ~ this ~ " where event_ts >= " ~ window_end()).columns[0].values()[0] -%}
                    {%- if later > 0 -%}
                        {%- do log("orch:meta " ~ model.unique_id ~ " orch/later_rows " ~ later, info=True) -%}
                        {%- do log(model.name ~ ": this window (" ~ start ~ " to " ~ end ~ ") was loaded after later hours (" ~ later ~ " rows after it): the level history, sessions and marts built from every hour are rebuilt by this build", info=True) -%}
                    {%- endif -%}
                {%- endif -%}
            {%- else -%}
                {%- do log("orch:meta " ~ model.unique_id ~ " orch/rebuilt insert-only load of every hour in staging (no window)", info=True) -%}
            {%- endif -%}
        {%- elif materialized != 'ephemeral' -%}
            {%- set why = config.get('meta', {}).get('orch_why') or 'derived from every hour of the vault by each build, so an hour loaded late or again is reflected here' -%}
            {%- do log("orch:meta " ~ model.unique_id ~ " orch/scope all hours", info=True) -%}
            {%- do log("orch:meta " ~ model.unique_id ~ " orch/rebuilt " ~ why, info=True) -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
