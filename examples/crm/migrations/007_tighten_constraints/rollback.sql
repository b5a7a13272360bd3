-- Batch 7 rollback: customer_id nullable again on Lead and Job, and their foreign keys back to
-- ON DELETE SET NULL ON UPDATE CASCADE, as examples/crm/schema.prisma (before batch 7) has them.
-- The data is not touched: every lead and job keeps its customer.

-- DropForeignKey
ALTER TABLE "Lead" DROP CONSTRAINT "Lead_customer_id_fkey";

-- DropForeignKey
ALTER TABLE "Job" DROP CONSTRAINT "Job_customer_id_fkey";

-- AlterTable
ALTER TABLE "Lead" ALTER COLUMN "customer_id" DROP NOT NULL;

-- AlterTable
ALTER TABLE "Job" ALTER COLUMN "customer_id" DROP NOT NULL;

-- AddForeignKey
ALTER TABLE "Lead" ADD CONSTRAINT "Lead_customer_id_fkey" FOREIGN KEY ("customer_id") REFERENCES "Customer"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Job" ADD CONSTRAINT "Job_customer_id_fkey" FOREIGN KEY ("customer_id") REFERENCES "Customer"("id") ON DELETE SET NULL ON UPDATE CASCADE;
