-- Seed the category tree. ON CONFLICT keeps it idempotent: some environments were seeded by hand.
-- (This file was written on Windows: CRLF line endings, as committed.)
INSERT INTO "Category" ("name", "slug") VALUES ('Tools', 'tools'), ('Toys', 'toys')
ON CONFLICT ("slug") DO NOTHING;

INSERT INTO "Category" ("name", "slug", "parentId")
SELECT 'Power tools', 'power-tools', c."id" FROM "Category" c WHERE c."slug" = 'tools'
ON CONFLICT ("slug") DO UPDATE SET "parentId" = EXCLUDED."parentId";

INSERT INTO "_CategoryToProduct" ("A", "B")
WITH RECURSIVE tree AS (
    SELECT "id", "parentId", 0 AS depth FROM "Category" WHERE "parentId" IS NULL
    UNION ALL
    SELECT c."id", c."parentId", tree.depth + 1 FROM "Category" c JOIN tree ON c."parentId" = tree."id"
)
SELECT tree."id", p."id" FROM tree JOIN "Product" p ON (p."id" + tree.depth) % 2 = 0;

COMMENT ON TABLE "Category" IS 'Category tree: one row per node.
Seeded by the migration 20230113090000_seed_categories.';
