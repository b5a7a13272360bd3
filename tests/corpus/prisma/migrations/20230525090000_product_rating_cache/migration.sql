-- AlterTable
ALTER TABLE "Product" ADD COLUMN     "ratingAvg" DECIMAL(3,2),
ADD COLUMN     "ratingCount" INTEGER NOT NULL DEFAULT 0;

-- Keep the cached rating in step with "Review"; nested dollar quotes ($body$ around $$) on purpose.
CREATE OR REPLACE FUNCTION refresh_product_rating() RETURNS trigger
LANGUAGE plpgsql AS $body$
DECLARE
  target integer := CASE WHEN TG_OP = 'DELETE' THEN OLD."productId" ELSE NEW."productId" END;
BEGIN
  EXECUTE $$UPDATE "Product" p
               SET "ratingAvg" = s.avg, "ratingCount" = s.n
              FROM (SELECT avg("rating")::numeric(3,2) AS avg, count(*)::int AS n
                      FROM "Review" WHERE "productId" = $1) s
             WHERE p."id" = $1
          $$ USING target;
  RETURN NULL;
END;
$body$;

CREATE TRIGGER review_rating
    AFTER INSERT OR UPDATE OR DELETE ON "Review"
    FOR EACH ROW EXECUTE FUNCTION refresh_product_rating();

-- Seed a few reviews (staging parity); the trigger fills the cache.
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT u."id" AS uid, p."id" AS pid
             FROM "User" u CROSS JOIN "Product" p
            WHERE (u."id" + p."id") % 3 = 0
  LOOP
    INSERT INTO "Review" ("productId", "userId", "rating", "body")
    VALUES (r.pid, r.uid, 1 + (r.uid * 7 + r.pid) % 5, 'Seeded; see the migration');
  END LOOP;
END
$$;
