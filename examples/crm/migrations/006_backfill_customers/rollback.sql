-- Batch 6 rollback: put back exactly the rows that were there before migration.sql, from the
-- backup table it wrote, then drop the backup table. Roll batch 7 back first: while
-- customer_id is NOT NULL the leads and jobs cannot get their NULL back.
--
-- It restores from any state migration.sql stopped in (a batched backfill stopped midway): only
-- rows whose customer changed are put back, and the customers deleted are those with the id the
-- backfill gives a saved lead's customer ('cus_' || its id), which preflight proved free before.

UPDATE "Job" AS j
SET "customer_id" = b."previous_customer_id",
    "updated_at" = b."previous_updated_at"
FROM "_runbook_backfill_006" AS b
WHERE b."kind" = 'job'
  AND b."row_id" = j."id"
  AND j."customer_id" IS DISTINCT FROM b."previous_customer_id";

UPDATE "Lead" AS l
SET "customer_id" = b."previous_customer_id",
    "updated_at" = b."previous_updated_at"
FROM "_runbook_backfill_006" AS b
WHERE b."kind" = 'lead'
  AND b."row_id" = l."id"
  AND l."customer_id" IS DISTINCT FROM b."previous_customer_id";

DELETE FROM "Customer" AS c
USING "_runbook_backfill_006" AS b
WHERE b."kind" = 'lead'
  AND c."id" = 'cus_' || b."row_id";

DROP TABLE "_runbook_backfill_006";
