-- Custom migration: uses the values added by the previous migration (an enum value cannot be
-- used in the transaction that adds it, so this is a migration of its own).
UPDATE "Order" SET "cancelledAt" = "createdAt" + INTERVAL '2 hours' WHERE "id" % 5 = 0;

UPDATE "Order"
SET    "status" = 'CANCELLED'
WHERE  "cancelledAt" IS NOT NULL;

UPDATE "Order" SET "status" = 'PAID' WHERE "status" = 'PENDING' AND "id" % 2 = 0;
