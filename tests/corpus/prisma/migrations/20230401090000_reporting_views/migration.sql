-- A schema for the BI tool: read-only views, nothing here is written by the app.
CREATE SCHEMA IF NOT EXISTS reporting;

COMMENT ON SCHEMA reporting IS 'Read-only views for the BI tool; nothing here is written by the app.';

CREATE VIEW reporting.order_totals AS
SELECT o."id"              AS order_id,
       o."userId"          AS user_id,
       o."status"::text    AS status,
       coalesce(sum(oi."lineTotal"), 0) AS total
FROM "Order" o
LEFT JOIN "OrderItem" oi ON oi."orderId" = o."id"
GROUP BY o."id", o."userId", o."status";

COMMENT ON VIEW reporting.order_totals IS 'One row per order; total in the order''s currency';

GRANT USAGE ON SCHEMA reporting TO PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA reporting GRANT SELECT ON TABLES TO PUBLIC;
