-- AlterTable: computed by the database, so reports and the API agree on a line's total.
ALTER TABLE "OrderItem" ADD COLUMN "lineTotal" DECIMAL(12,2) GENERATED ALWAYS AS ("quantity" * "unitPrice") STORED;

-- Full-text search over products: a generated tsvector and a GIN index on it.
ALTER TABLE "Product" ADD COLUMN "searchVector" tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', coalesce("name", '')), 'A') ||
    setweight(to_tsvector('english', coalesce("description", '')), 'B')
) STORED;

-- CreateIndex
CREATE INDEX "Product_searchVector_idx" ON "Product" USING GIN ("searchVector");
