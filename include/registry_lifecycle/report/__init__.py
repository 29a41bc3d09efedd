"""The quarterly compliance report: evidence from the lake, rendered for auditors.

`period` (quarters and custom ranges) -> `evidence` (what is read, and a record of every file)
-> `sections/*` (one module per section) -> `build` (the `Report`) -> `render` (HTML, jinja2,
autoescaped) -> `pdf` (WeasyPrint, the same HTML) -> `export` (CSV per table, JSON evidence)
-> `bundle` (SHA-256 manifest, zip, verification) -> `storage` (S3 with Object Lock and
presigned URLs, or a folder). `run` strings them together for the DAG and `reglife report`.
Nothing here imports Airflow.
"""
