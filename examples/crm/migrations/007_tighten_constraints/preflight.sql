-- name: Leads with NULL customer_id
-- expect: 0
SELECT count(*) FROM "Lead" WHERE "customer_id" IS NULL;

-- name: Jobs with NULL customer_id
-- expect: 0
SELECT count(*) FROM "Job" WHERE "customer_id" IS NULL;

-- name: Jobs whose customer differs from their lead's
-- expect: 0
SELECT count(*) FROM "Job" AS j JOIN "Lead" AS l ON l."id" = j."lead_id" WHERE j."customer_id" IS DISTINCT FROM l."customer_id";

-- name: Foreign keys to re-create exist under Prisma's names
-- expect: 2
SELECT count(*) FROM pg_catalog.pg_constraint WHERE contype = 'f' AND conname IN ('Lead_customer_id_fkey', 'Job_customer_id_fkey') AND connamespace = current_schema()::regnamespace;
