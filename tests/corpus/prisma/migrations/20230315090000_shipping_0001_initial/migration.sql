--
-- Create model Shipment
--
CREATE TABLE "shipping_shipment" ("id" serial NOT NULL PRIMARY KEY, "order_id" integer NOT NULL, "carrier" varchar(32) NOT NULL, "tracking_number" varchar(64) NULL, "shipped_at" timestamp with time zone NULL, "weight_grams" integer NOT NULL);
--
-- Create constraint shipping_one_open_per_order on model shipment
--
CREATE UNIQUE INDEX "shipping_one_open_per_order" ON "shipping_shipment" ("order_id") WHERE "shipped_at" IS NULL;
ALTER TABLE "shipping_shipment" ADD CONSTRAINT "shipping_shipment_order_id_5c0e8f3a_fk_Order_id" FOREIGN KEY ("order_id") REFERENCES "Order" ("id") DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX "shipping_shipment_order_id_5c0e8f3a" ON "shipping_shipment" ("order_id");
CREATE INDEX "shipping_shipment_tracking_number_7d1e2f3a" ON "shipping_shipment" ("tracking_number");
CREATE INDEX "shipping_shipment_tracking_number_7d1e2f3a_like" ON "shipping_shipment" ("tracking_number" varchar_pattern_ops);
