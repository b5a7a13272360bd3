-- name: Leads with NULL customer_id
-- expect: 0
SELECT count(*) FROM "Lead" WHERE "customer_id" IS NULL;

-- name: Jobs with NULL customer_id
-- expect: 0
SELECT count(*) FROM "Job" WHERE "customer_id" IS NULL;

-- name: Jobs whose customer differs from their lead's
-- expect: 0
SELECT count(*) FROM "Job" AS j JOIN "Lead" AS l ON l."id" = j."lead_id" WHERE j."customer_id" IS DISTINCT FROM l."customer_id";

-- name: No duplicate customer emails
-- expect: 0
SELECT count(*) FROM (SELECT "email" FROM "Customer" WHERE "email" IS NOT NULL GROUP BY "email" HAVING count(*) > 1) AS duplicated;

-- name: Every customer created by the backfill has a lead
-- expect: 0
SELECT count(*) FROM "_runbook_backfill_006" AS b JOIN "Customer" AS c ON c."id" = 'cus_' || b."row_id" WHERE b."kind" = 'lead' AND NOT EXISTS (SELECT 1 FROM "Lead" AS l WHERE l."customer_id" = c."id");

-- name: Rollback backup table "_runbook_backfill_006" is in place
-- expect: 1
SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = '_runbook_backfill_006';
