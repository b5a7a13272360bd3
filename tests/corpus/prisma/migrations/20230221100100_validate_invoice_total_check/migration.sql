-- Rails: validate_check_constraint :invoices, name: "invoices_total_cents_non_negative"
ALTER TABLE "invoices" VALIDATE CONSTRAINT "invoices_total_cents_non_negative";
