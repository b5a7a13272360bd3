-- January leaves the live table without blocking writers (cannot run in a transaction),
-- then is renamed and documented as an archive.
ALTER TABLE "AuditEvent" DETACH PARTITION "AuditEvent_2023_01" CONCURRENTLY;

ALTER TABLE "AuditEvent_2023_01" RENAME TO "AuditEventArchive_2023_01";

COMMENT ON TABLE "AuditEventArchive_2023_01" IS 'Detached 2023-04-20; drop after 2024-01-01';
