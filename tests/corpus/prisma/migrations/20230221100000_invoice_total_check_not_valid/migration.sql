-- Rails: add_check_constraint :invoices, "total_cents >= 0", name: "invoices_total_cents_non_negative", validate: false
ALTER TABLE "invoices" ADD CONSTRAINT invoices_total_cents_non_negative CHECK (total_cents >= 0) NOT VALID;
