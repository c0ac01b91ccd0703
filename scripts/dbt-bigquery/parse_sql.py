"""Parses every compiled model and test under a folder as BigQuery SQL (sqlglot), prints each
file that does not parse, and exits 1 if any (scripts/check-dbt-bigquery)."""
import pathlib, sys, sqlglot
bad = 0; n = 0
for p in sorted(pathlib.Path(sys.argv[1]).rglob("*.sql")):
    n += 1
    try:
        sqlglot.parse(p.read_text(), read="bigquery")
    except Exception as e:
        bad += 1
        print(p, str(e)[:300])
print(f"{n} compiled files parsed as BigQuery SQL, {bad} failed")
sys.exit(1 if bad or n == 0 else 0)
