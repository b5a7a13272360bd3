-- The model OrderItem became LineItem. Prisma generated DROP TABLE + CREATE TABLE; edited by hand
-- into renames that keep the rows: table, primary key, foreign keys and the id sequence.
ALTER TABLE "OrderItem" RENAME TO "LineItem";

-- RenamePrimaryKey
ALTER TABLE "LineItem" RENAME CONSTRAINT "OrderItem_pkey" TO "LineItem_pkey";

-- RenameForeignKey
ALTER TABLE "LineItem" RENAME CONSTRAINT "OrderItem_orderId_fkey" TO "LineItem_orderId_fkey";

-- RenameForeignKey
ALTER TABLE "LineItem" RENAME CONSTRAINT "OrderItem_productId_fkey" TO "LineItem_productId_fkey";

ALTER SEQUENCE "OrderItem_id_seq" RENAME TO "LineItem_id_seq";
