"""Compiles the dbt project for BigQuery without a BigQuery (scripts/check-dbt-bigquery): dbt
runs in process with the adapter's connection stubbed and no relation cache; every relation
exists when EXISTING is set (an hourly build: the vault's insert-only branch), none otherwise (a
first build). Column types are unknown, so raw timestamps compile as casts. Usage:
python compile.py compile --project-dir ... (dbt's own arguments)."""
import os, sys
from unittest import mock
from dbt.adapters.bigquery.relation import BigQueryRelation
from dbt.adapters.bigquery.connections import BigQueryConnectionManager
from dbt.adapters.bigquery.impl import BigQueryAdapter
from dbt.cli.main import dbtRunner

def fake_open(cls, connection):
    connection.handle = mock.MagicMock()
    connection.state = "open"
    return connection

with mock.patch.object(BigQueryConnectionManager, "open", classmethod(fake_open)), \
     mock.patch.object(BigQueryAdapter, "list_relations_without_caching", lambda self, schema_relation: []), \
     mock.patch.object(BigQueryAdapter, "get_relation", lambda self, database, schema, identifier: (
         BigQueryRelation.create(database=database, schema=schema, identifier=identifier, type="table")
         if os.environ.get("EXISTING") else None)), \
     mock.patch.object(BigQueryAdapter, "get_columns_in_relation", lambda self, relation: []), \
     mock.patch.object(BigQueryAdapter, "list_schemas", lambda self, database: []):
    res = dbtRunner().invoke(sys.argv[1:])
    print("success:", res.success, res.exception)
    sys.exit(0 if res.success else 1)
