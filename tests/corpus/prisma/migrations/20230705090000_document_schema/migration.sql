/*
 * Documentation for the data team; written by hand; reviewed in PR #412.
 * Nested /* block comments; like this one; */ are legal in PostgreSQL;
 * and so is a semicolon in a comment -- like this; or this;
 */
COMMENT ON TABLE "Order" IS 'One checkout; see "LineItem" for its lines';
COMMENT ON COLUMN "Order"."number" IS 'Human-facing; from "Order_number_seq"; never reused'; -- trailing comment; with a semicolon
COMMENT ON INDEX "Order_number_key" IS 'Lookups by order number (support tickets)';
COMMENT ON TYPE "OrderStatus" IS 'PENDING -> PAID -> SHIPPED; or CANCELLED';
COMMENT ON CONSTRAINT "Review_rating_range" ON "Review" IS 'Stars: 1..5';
COMMENT ON TRIGGER order_status_audit ON "Order" IS 'Writes "AuditEvent" rows; see audit_order_change()';
COMMENT ON SEQUENCE "Order_number_seq" IS 'Starts at 100000';
COMMENT ON MATERIALIZED VIEW reporting.sales_by_day IS 'Refreshed nightly -- by cron; not by the app';
COMMENT ON COLUMN invoices.total_cents IS $$Integer cents; never floats; see ADR-7 ('money')$$;
COMMENT ON POLICY "Address_owner" ON "Address" IS E'Owner only;\nset app.user_id per request';
