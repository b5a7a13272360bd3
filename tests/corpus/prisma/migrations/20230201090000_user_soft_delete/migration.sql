-- AlterTable
ALTER TABLE "User" ADD COLUMN     "deletedAt" TIMESTAMP(3);

-- DropIndex
DROP INDEX "User_email_key";

-- Partial unique index, added by hand (schema.prisma cannot express it): one live account per
-- address, case-insensitively; deleted accounts keep their email for the audit trail.
CREATE UNIQUE INDEX "User_email_live_key" ON "User" (lower("email")) WHERE "deletedAt" IS NULL;
