-- Hours of the day, with the part of the day they belong to.
{{ config(meta={"orch_why": "the hours of the day: the same at every build"}) }}
{% set rows = [] %}
{% for h in range(24) %}
    {% set part = 'night' if h < 6 else ('morning' if h < 12 else ('afternoon' if h < 18 else 'evening')) %}
    {% do rows.append("select " ~ h ~ " as hour_of_day, '" ~ part ~ "' as part_of_day") %}
{% endfor %}
{{ rows | join('\nunion all\n') }}
