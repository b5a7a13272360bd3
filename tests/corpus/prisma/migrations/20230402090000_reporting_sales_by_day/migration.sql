CREATE MATERIALIZED VIEW reporting.sales_by_day AS
SELECT date_trunc('day', o."createdAt")::date AS day,
       count(*)                             AS orders,
       sum(t.total)                         AS revenue
FROM "Order" o
JOIN reporting.order_totals t ON t.order_id = o."id"
GROUP BY 1
WITH DATA;

-- REFRESH ... CONCURRENTLY needs a unique index on the materialized view.
CREATE UNIQUE INDEX sales_by_day_day_key ON reporting.sales_by_day (day);

REFRESH MATERIALIZED VIEW CONCURRENTLY reporting.sales_by_day;
