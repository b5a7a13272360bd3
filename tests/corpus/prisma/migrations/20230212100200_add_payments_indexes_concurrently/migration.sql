-- Rails: disable_ddl_transaction!
--   add_index :payments, :invoice_id, algorithm: :concurrently
--   add_index :payments, [:provider, :provider_reference], unique: true,
--             where: "provider_reference IS NOT NULL", algorithm: :concurrently
CREATE INDEX CONCURRENTLY "index_payments_on_invoice_id" ON "payments" ("invoice_id");
CREATE UNIQUE INDEX CONCURRENTLY "index_payments_on_provider_and_provider_reference" ON "payments" ("provider", "provider_reference") WHERE provider_reference IS NOT NULL;
