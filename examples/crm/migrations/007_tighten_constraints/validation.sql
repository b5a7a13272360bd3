-- Batch 7 validation: the behaviour tests of the reference document that batch.toml's [checks]
-- do not generate. The checks add, per column: NOT NULL in the schema, UPDATE to NULL rejected,
-- no existing NULL; per foreign key: ON DELETE RESTRICT in the catalog, delete of a referenced
-- customer rejected. Everything runs in one transaction that is rolled back.

-- name: Reject Lead without customer_id
-- expect: error 23502
INSERT INTO "Lead" ("id", "channel", "name", "updated_at") VALUES ('lead_validation_1', 'messenger', 'Validation Test', NOW());

-- name: Reject Job without customer_id
-- expect: error 23502
INSERT INTO "Job" ("id", "lead_id", "window_start", "window_end", "updated_at") VALUES ('job_validation_1', (SELECT "id" FROM "Lead" ORDER BY "id" LIMIT 1), NOW(), NOW() + interval '2 hours', NOW());

-- name: Allow Lead with customer_id
-- expect: ok
INSERT INTO "Lead" ("id", "customer_id", "channel", "name", "updated_at") VALUES ('lead_validation_2', (SELECT "id" FROM "Customer" ORDER BY "id" LIMIT 1), 'messenger', 'Validation Test', NOW());

-- name: Allow Job with customer_id
-- expect: ok
INSERT INTO "Job" ("id", "customer_id", "lead_id", "window_start", "window_end", "updated_at") SELECT 'job_validation_2', l."customer_id", l."id", NOW(), NOW() + interval '2 hours', NOW() FROM (SELECT "id", "customer_id" FROM "Lead" ORDER BY "id" LIMIT 1) AS l;
