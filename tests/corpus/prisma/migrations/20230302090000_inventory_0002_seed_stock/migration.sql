--
-- Raw SQL operation
--
INSERT INTO inventory_warehouse (code, name, created) VALUES ('BER-1', 'Berlin', now()), ('LIS-1', 'Lisbon', now());
--
-- Raw SQL operation
--
INSERT INTO inventory_stockitem (product_id, quantity, warehouse_id)
SELECT p.id, 10 * p.id, w.id FROM "Product" p CROSS JOIN inventory_warehouse w;
