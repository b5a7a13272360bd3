--
-- Add field reserved to stockitem
--
ALTER TABLE "inventory_stockitem" ADD COLUMN "reserved" integer DEFAULT 0 NOT NULL CHECK ("reserved" >= 0);
ALTER TABLE "inventory_stockitem" ALTER COLUMN "reserved" DROP DEFAULT;
--
-- Add field updated to warehouse
--
ALTER TABLE "inventory_warehouse" ADD COLUMN "updated" timestamp with time zone DEFAULT '2023-03-05T09:00:00+00:00'::timestamptz NOT NULL;
ALTER TABLE "inventory_warehouse" ALTER COLUMN "updated" DROP DEFAULT;
