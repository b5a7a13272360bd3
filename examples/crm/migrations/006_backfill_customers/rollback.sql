-- Batch 6 rollback: put back exactly the rows that were there before migration.sql, from the
-- backup table it wrote, then drop the backup table. Roll batch 7 back first: while
-- customer_id is NOT NULL the leads and jobs cannot get their NULL back.

UPDATE "Job" AS j
SET "customer_id" = b."previous_customer_id",
    "updated_at" = b."previous_updated_at"
FROM "_runbook_backfill_006" AS b
WHERE b."kind" = 'job'
  AND b."row_id" = j."id";

UPDATE "Lead" AS l
SET "customer_id" = b."previous_customer_id",
    "updated_at" = b."previous_updated_at"
FROM "_runbook_backfill_006" AS b
WHERE b."kind" = 'lead'
  AND b."row_id" = l."id";

DELETE FROM "Customer" AS c
USING "_runbook_backfill_006" AS b
WHERE b."kind" = 'customer'
  AND b."row_id" = c."id";

DROP TABLE "_runbook_backfill_006";
