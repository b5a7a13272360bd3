-- Rails: validate_foreign_key :payments, :invoices (no semicolon at the end of the file)
ALTER TABLE "payments" VALIDATE CONSTRAINT "fk_rails_c4b0a1d7e2"