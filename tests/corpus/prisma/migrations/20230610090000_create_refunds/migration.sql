-- Rails: create_table :refunds do |t| t.references :payment, null: false, foreign_key: true ... end
CREATE TABLE "refunds" ("id" bigserial primary key, "payment_id" bigint NOT NULL, "amount_cents" bigint NOT NULL, "reason" text, "created_at" timestamp(6) NOT NULL, "updated_at" timestamp(6) NOT NULL, CONSTRAINT "fk_rails_7d2c4e1f0a"
FOREIGN KEY ("payment_id")
  REFERENCES "payments" ("id")
);
CREATE INDEX "index_refunds_on_payment_id" ON "refunds" ("payment_id");
INSERT INTO "refunds" ("payment_id", "amount_cents", "reason", "created_at", "updated_at")
SELECT "id", "amount_cents" / 2, 'goodwill', now(), now() FROM "payments" ORDER BY "id" LIMIT 1;
