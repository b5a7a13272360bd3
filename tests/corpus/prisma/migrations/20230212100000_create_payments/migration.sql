-- Rails: create_table :payments + add_foreign_key :payments, :invoices, validate: false
-- (the SQL from the migration's log, as ActiveRecord sends it).
CREATE TABLE "payments" ("id" bigserial primary key, "invoice_id" bigint NOT NULL, "amount_cents" bigint DEFAULT 0 NOT NULL, "provider" character varying NOT NULL, "provider_reference" character varying, "metadata" jsonb DEFAULT '{}' NOT NULL, "created_at" timestamp(6) NOT NULL, "updated_at" timestamp(6) NOT NULL);
ALTER TABLE "payments" ADD CONSTRAINT "fk_rails_c4b0a1d7e2"
FOREIGN KEY ("invoice_id")
  REFERENCES "invoices" ("id")
 NOT VALID;
