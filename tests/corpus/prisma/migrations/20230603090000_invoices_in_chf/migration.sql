-- Swiss customers are invoiced in CHF from now on.
UPDATE invoices SET currency = 'CHF', updated_at = now()
WHERE order_id IN (SELECT "id" FROM "Order" WHERE "userId" = 3);
