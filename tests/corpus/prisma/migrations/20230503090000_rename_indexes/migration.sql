-- RenameIndex
ALTER INDEX "User_email_live_key" RENAME TO "User_live_email_key";

-- RenameIndex
ALTER INDEX "Product_searchVector_idx" RENAME TO "Product_search_idx";
