-- Batch 6: give every Lead and Job a customer, so that batch 7 can make customer_id NOT NULL.
--
-- A lead without a customer is linked to the customer with the same email when there is one,
-- otherwise a customer is created from the lead's name, email and phone (id 'cus_' || lead id;
-- leads without a customer that share an email get one customer, named after the first lead).
-- Then every job without a customer gets its lead's customer.
--
-- The previous state goes to "_runbook_backfill_006" first (each changed lead's and job's
-- previous customer_id and updated_at), so that rollback.sql puts back exactly the rows that were
-- there before; the customers created are 'cus_' || the id of a saved lead (ids preflight proves
-- free), so rollback.sql finds them without a list.
--
-- Every data statement has the shape `runbook apply 6 --strategy online` runs in batches by keyset
-- on the primary key (each batch its own short transaction, resumable); applied in one transaction
-- (psql -1, --strategy direct) it ends in the same state. rollback.sql restores from any state in
-- between, too (a backfill stopped midway).

CREATE TABLE "_runbook_backfill_006" (
    "kind" TEXT NOT NULL CHECK ("kind" IN ('lead', 'job')),
    "row_id" TEXT NOT NULL,
    "previous_customer_id" TEXT,
    "previous_updated_at" TIMESTAMP(3),
    CONSTRAINT "_runbook_backfill_006_pkey" PRIMARY KEY ("kind", "row_id")
);

INSERT INTO "_runbook_backfill_006" ("kind", "row_id", "previous_customer_id", "previous_updated_at")
SELECT 'lead', "id", "customer_id", "updated_at"
FROM "Lead"
WHERE "customer_id" IS NULL;

INSERT INTO "_runbook_backfill_006" ("kind", "row_id", "previous_customer_id", "previous_updated_at")
SELECT 'job', "id", "customer_id", "updated_at"
FROM "Job"
WHERE "customer_id" IS NULL;

-- One customer per email: in lead id order, the first lead of an email creates it, the unique index
-- on "Customer".email turns away the next ones and the emails that already have a customer.
INSERT INTO "Customer" ("id", "name", "email", "phone", "created_at", "updated_at")
SELECT 'cus_' || l."id", l."name", l."email", l."phone", NOW(), NOW()
FROM "Lead" AS l
WHERE l."customer_id" IS NULL
ORDER BY l."id"
ON CONFLICT ("email") DO NOTHING;

UPDATE "Lead" AS l
SET "customer_id" = coalesce(
        (SELECT c."id" FROM "Customer" AS c WHERE c."email" = l."email"),
        'cus_' || l."id"),
    "updated_at" = NOW()
WHERE l."customer_id" IS NULL
  AND EXISTS (SELECT 1 FROM "_runbook_backfill_006" AS b WHERE b."kind" = 'lead' AND b."row_id" = l."id");

UPDATE "Job" AS j
SET "customer_id" = l."customer_id",
    "updated_at" = NOW()
FROM "Lead" AS l
WHERE l."id" = j."lead_id"
  AND j."customer_id" IS NULL
  AND EXISTS (SELECT 1 FROM "_runbook_backfill_006" AS b WHERE b."kind" = 'job' AND b."row_id" = j."id");
