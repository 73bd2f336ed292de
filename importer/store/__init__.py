"""The store: tables, engines and locks, the bulk load, queries, migrations."""
