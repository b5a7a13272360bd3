"""`runbook fleet`: one batch across the databases of a fleet.toml, on Dask.

model (the types, no dependencies) <- config (fleet.toml), task (one target on a worker), report
(fleet.html / fleet.md) <- scheduler (the Dask cluster, the waves). archive packs folders for workers
that do not share the client's disk. Nothing is imported here: only the scheduler needs distributed.
"""
