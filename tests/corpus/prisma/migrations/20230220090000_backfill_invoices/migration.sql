-- Data migration (Rails `execute <<~SQL`): one invoice per order that was not cancelled,
-- totals from the order lines, and a payment for every other invoice.
INSERT INTO "invoices" ("order_id", "number", "total_cents", "currency", "issued_at", "created_at", "updated_at")
SELECT o."id", 'INV-' || lpad(o."id"::text, 6, '0'), 0, 'USD', o."createdAt", now(), now()
FROM "Order" o
WHERE o."status" <> 'CANCELLED'
ORDER BY o."id";

UPDATE invoices
SET    total_cents = totals.cents,
       updated_at  = now()
FROM  (
        SELECT oi."orderId" AS order_id, round(sum(oi."quantity" * oi."unitPrice") * 100)::bigint AS cents
        FROM   "OrderItem" oi
        GROUP  BY oi."orderId"
      ) AS totals
WHERE  totals.order_id = invoices.order_id;

INSERT INTO payments (invoice_id, amount_cents, provider, provider_reference, created_at, updated_at)
SELECT id, total_cents, 'stripe', 'pi_' || md5(number), now(), now()
FROM invoices
WHERE id % 2 = 1;
