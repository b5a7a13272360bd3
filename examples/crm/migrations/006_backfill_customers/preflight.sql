-- name: Backup table "_runbook_backfill_006" does not exist yet
-- expect: 0
SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = '_runbook_backfill_006';

-- name: Customer emails are unique
-- expect: 0
SELECT count(*) FROM (SELECT "email" FROM "Customer" WHERE "email" IS NOT NULL GROUP BY "email" HAVING count(*) > 1) AS duplicated;

-- name: Customer ids the backfill would create are free
-- expect: 0
SELECT count(*) FROM "Lead" AS l JOIN "Customer" AS c ON c."id" = 'cus_' || l."id" WHERE l."customer_id" IS NULL;

-- name: Jobs whose customer differs from their lead's (both set)
-- expect: 0
SELECT count(*) FROM "Job" AS j JOIN "Lead" AS l ON l."id" = j."lead_id" WHERE j."customer_id" <> l."customer_id";
