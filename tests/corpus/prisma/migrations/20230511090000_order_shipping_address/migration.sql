-- AlterTable
ALTER TABLE "Order" ADD COLUMN     "shippingAddressId" TEXT;

-- Backfill: one default shipping address per user. Prisma's cuid() is not available in SQL,
-- so these ids are derived from the user id; new rows get cuids from the app.
INSERT INTO "Address" ("id", "userId", "kind", "line1", "city", "postalCode", "isDefault", "updatedAt")
SELECT 'legacy_' || md5(u."id"::text), u."id", 'SHIPPING', 'Unknown street 1', 'Berlin', '10115', true, CURRENT_TIMESTAMP
FROM "User" u;

UPDATE "Order" AS o
SET    "shippingAddressId" = a."id"
FROM   "Address" AS a
WHERE  a."userId" = o."userId"
  AND  a."kind" = 'SHIPPING'
  AND  a."isDefault";

-- AddForeignKey
ALTER TABLE "Order" ADD CONSTRAINT "Order_shippingAddressId_fkey" FOREIGN KEY ("shippingAddressId") REFERENCES "Address"("id") ON DELETE SET NULL ON UPDATE CASCADE;
