/* Next month's partition is created detached, then attached; the CHECK constraint that matches
   the bound lets ATTACH PARTITION skip its scan; it is dropped afterwards (no longer needed). */
CREATE TABLE "AuditEvent_2023_04" (LIKE "AuditEvent" INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE "AuditEvent_2023_04" ADD CONSTRAINT "AuditEvent_2023_04_bound"
    CHECK ("occurredAt" >= '2023-04-01' AND "occurredAt" < '2023-05-01');
ALTER TABLE "AuditEvent" ATTACH PARTITION "AuditEvent_2023_04" FOR VALUES FROM ('2023-04-01') TO ('2023-05-01');
ALTER TABLE "AuditEvent_2023_04" DROP CONSTRAINT "AuditEvent_2023_04_bound";
