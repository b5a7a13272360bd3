-- Rails: add_column :payments, :status, :string, default: "pending", null: false
ALTER TABLE "payments" ADD "status" character varying DEFAULT 'pending' NOT NULL;
-- Rails: change_column :payments, :amount_cents, :decimal, precision: 12, scale: 0
ALTER TABLE "payments" ALTER COLUMN "amount_cents" TYPE numeric(12,0) USING amount_cents::numeric;
-- Rails: rename_column :payments, :provider_reference, :external_id (renames the index too)
ALTER TABLE "payments" RENAME COLUMN "provider_reference" TO "external_id";
ALTER INDEX "index_payments_on_provider_and_provider_reference" RENAME TO "index_payments_on_provider_and_external_id";
