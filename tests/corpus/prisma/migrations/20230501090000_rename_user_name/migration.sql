-- AlterTable
-- Edited by hand: Prisma generated DROP COLUMN "name" + ADD COLUMN "displayName", which loses the data;
-- a rename keeps it.
ALTER TABLE "User" RENAME COLUMN "name" TO "displayName";
