--
-- Alter field on_hand on stockitem
--
ALTER TABLE "inventory_stockitem" DROP CONSTRAINT "inventory_stockitem_quantity_check";
ALTER TABLE "inventory_stockitem" ALTER COLUMN "on_hand" TYPE numeric(12, 3) USING "on_hand"::numeric(12, 3);
ALTER TABLE "inventory_stockitem" ADD CONSTRAINT "inventory_stockitem_on_hand_check" CHECK ("on_hand" >= 0);
