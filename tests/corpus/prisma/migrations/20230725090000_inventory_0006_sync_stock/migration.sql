--
-- Raw SQL operation
--
INSERT INTO inventory_depot (code, name, created, updated) VALUES ('MAD-1', 'Madrid', now(), now());
--
-- Raw SQL operation
--
MERGE INTO inventory_stockitem AS s
USING (SELECT p.id AS product_id, d.id AS depot_id FROM "Product" p CROSS JOIN inventory_depot d) AS want
ON s.product_id = want.product_id AND s.depot_id = want.depot_id
WHEN NOT MATCHED THEN
    INSERT (product_id, on_hand, depot_id, reserved) VALUES (want.product_id, 0, want.depot_id, 0)
WHEN MATCHED AND s.on_hand < s.reserved THEN
    UPDATE SET reserved = 0;
