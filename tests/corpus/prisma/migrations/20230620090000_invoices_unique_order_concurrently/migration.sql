-- Rails: disable_ddl_transaction!
--   remove_index :invoices, :order_id, algorithm: :concurrently
--   add_index :invoices, :order_id, unique: true, algorithm: :concurrently
DROP INDEX CONCURRENTLY "index_invoices_on_order_id";
CREATE UNIQUE INDEX CONCURRENTLY "index_invoices_on_order_id" ON "invoices" ("order_id");
