-- Rails: disable_ddl_transaction! -- the GIN index bloated during the backfills; rebuild it
-- without blocking writes, then refresh the planner's statistics.
REINDEX INDEX CONCURRENTLY "Product_search_idx";
ANALYZE "Product";
