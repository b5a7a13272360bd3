-- CreateTable: partitioned by month (Prisma sees a plain table; the partitioning is hand-written).
CREATE TABLE "AuditEvent" (
    "id" BIGSERIAL NOT NULL,
    "occurredAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actorId" INTEGER,
    "action" TEXT NOT NULL,
    "payload" JSONB NOT NULL DEFAULT '{}',

    CONSTRAINT "AuditEvent_pkey" PRIMARY KEY ("id", "occurredAt")
) PARTITION BY RANGE ("occurredAt");

CREATE TABLE "AuditEvent_2023_01" PARTITION OF "AuditEvent" FOR VALUES FROM ('2023-01-01') TO ('2023-02-01');
CREATE TABLE "AuditEvent_2023_02" PARTITION OF "AuditEvent" FOR VALUES FROM ('2023-02-01') TO ('2023-03-01');
CREATE TABLE "AuditEvent_2023_03" PARTITION OF "AuditEvent" FOR VALUES FROM ('2023-03-01') TO ('2023-04-01');

-- CreateIndex (created on every partition)
CREATE INDEX "AuditEvent_actorId_occurredAt_idx" ON "AuditEvent"("actorId", "occurredAt");
