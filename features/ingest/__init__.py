"""Stage 1, ingest: raw files and webhooks → normalised, deduplicated events in the DuckDB store.

- `readers`: JSON Lines, CSV and Parquet into rows, every line accounted for;
- `parsers/`: phones, emails, names, VND amounts and timestamps, column-wise;
- `normalise`: rows → canonical events, or a quarantine reason per row;
- `keys`: the deduplication key of an event;
- `importer`: one transaction per file or batch (`ingest_file`, `import_rows`);
- `mapping`: exports with their own column names, through a TOML mapping file;
- `collector`: the HTTP collector for webhooks and SDKs.
"""
