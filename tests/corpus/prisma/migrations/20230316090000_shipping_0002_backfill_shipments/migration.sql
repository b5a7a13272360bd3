--
-- Raw SQL operation
--
INSERT INTO shipping_shipment (order_id, carrier, weight_grams, shipped_at)
SELECT id, 'DHL', 0, "createdAt" + interval '1 day' FROM "Order" WHERE status IN ('PAID', 'SHIPPED');
--
-- Raw SQL operation
--
WITH weights AS (
    SELECT oi."orderId" AS order_id, sum(oi.quantity * 250) AS grams
    FROM "OrderItem" oi
    GROUP BY 1
)
UPDATE shipping_shipment AS s
SET weight_grams = w.grams
FROM weights AS w
WHERE w.order_id = s.order_id;
