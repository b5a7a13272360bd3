--
-- Rename field quantity on stockitem to on_hand
--
ALTER TABLE "inventory_stockitem" RENAME COLUMN "quantity" TO "on_hand";
--
-- Rename model Warehouse to Depot
--
ALTER TABLE "inventory_warehouse" RENAME TO "inventory_depot";
--
-- Rename field warehouse on stockitem to depot
--
ALTER TABLE "inventory_stockitem" RENAME COLUMN "warehouse_id" TO "depot_id";
--
-- Rename index inventory_stockitem_warehouse_id_1f2e3d4c on stockitem to inventory_stockitem_depot_idx
--
ALTER INDEX "inventory_stockitem_warehouse_id_1f2e3d4c" RENAME TO "inventory_stockitem_depot_idx";
--
-- Rename unique constraint (RunSQL; Django 4.2 has no RenameConstraint operation)
--
ALTER TABLE "inventory_stockitem" RENAME CONSTRAINT "inventory_stockitem_warehouse_id_product_id_8c1c5d3e_uniq" TO "inventory_stockitem_depot_product_uniq";
