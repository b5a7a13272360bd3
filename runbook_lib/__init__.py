"""runbook: PostgreSQL schema migrations run as executable, auditable Jupyter notebooks.

The command layer (`commands`, driven by `cli`) runs the phase notebooks (`notebook`), each of which
is one call per cell into a phase (`phases`). A phase reads its batch (`batch`), analyses its SQL
(`sql`), changes the database through the executor (`execution`, `db`) and writes a record
(`report.records`) that the summary renders (`report`). `fleet` runs the same across many databases.
docs/architecture.md draws the picture.
"""
