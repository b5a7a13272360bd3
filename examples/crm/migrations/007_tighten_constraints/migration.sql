/*
  Warnings:

  - Made the column `customer_id` on table `Lead` required. This step will fail if there are existing NULL values in that column.
  - Made the column `customer_id` on table `Job` required. This step will fail if there are existing NULL values in that column.

*/
-- DropForeignKey
ALTER TABLE "Lead" DROP CONSTRAINT "Lead_customer_id_fkey";

-- DropForeignKey
ALTER TABLE "Job" DROP CONSTRAINT "Job_customer_id_fkey";

-- AlterTable
ALTER TABLE "Lead" ALTER COLUMN "customer_id" SET NOT NULL;

-- AlterTable
ALTER TABLE "Job" ALTER COLUMN "customer_id" SET NOT NULL;

-- AddForeignKey
ALTER TABLE "Lead" ADD CONSTRAINT "Lead_customer_id_fkey" FOREIGN KEY ("customer_id") REFERENCES "Customer"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Job" ADD CONSTRAINT "Job_customer_id_fkey" FOREIGN KEY ("customer_id") REFERENCES "Customer"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
