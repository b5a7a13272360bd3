"""Other tools' migration folders and history tables: golang-migrate, Flyway and Drizzle Kit.

Each layout module reads its tool's folder into `base.Migration`s in the tool's own order (refusing what
the tool would refuse), and its `History` reads and writes the tool's own history table as the tool does,
inside the migration's own transaction, so the tool and runbook agree afterwards. `detect` says which
layout a folder holds (runbook's batch folders and Prisma's are read by `runbook_lib.batch.discovery`).
"""
