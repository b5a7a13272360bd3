-- Seed data (created with `prisma migrate dev --create-only`, then edited by hand).
-- Staging and the backfills below rely on it; it runs once, like every migration.
INSERT INTO "User" ("email", "name", "role", "updatedAt") VALUES
    ('ada@example.com', 'Ada Lovelace', 'ADMIN', CURRENT_TIMESTAMP),
    ('grace@example.com', 'Grace Hopper', 'USER', CURRENT_TIMESTAMP),
    ('sean@example.com', 'Seán O''Brien', 'USER', CURRENT_TIMESTAMP),
    ('linus@example.com', NULL, 'USER', CURRENT_TIMESTAMP);

INSERT INTO "Product" ("sku", "name", "description", "price") VALUES
    ('WID-001', 'Widget', 'A widget; the small one', 9.99),
    ('WID-002', 'Widget XL', 'Large widget -- twice the size', 19.5),
    ('GAD-001', 'Gadget', NULL, 42.0),
    ('GIZ-001', 'Gizmo', 'Contains /* not a comment; */ text', 5.25);

-- Three orders per user, on consecutive days.
INSERT INTO "Order" ("userId", "createdAt")
SELECT u."id", TIMESTAMP '2023-01-05 10:00:00' + (n * INTERVAL '1 day')
FROM "User" u CROSS JOIN generate_series(0, 2) AS n
ORDER BY u."id", n;

INSERT INTO "OrderItem" ("orderId", "productId", "quantity", "unitPrice")
SELECT o."id", p."id", 1 + (o."id" + p."id") % 3, p."price"
FROM "Order" o JOIN "Product" p ON (o."id" + p."id") % 2 = 0;
