-- Idempotent: the type was created by hand on some environments before this migration existed.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'currency_code') THEN
        CREATE TYPE currency_code AS ENUM ('USD', 'EUR', 'GBP');
    END IF;
END$$;

ALTER TABLE invoices
    ALTER COLUMN currency DROP DEFAULT,
    ALTER COLUMN currency TYPE currency_code USING currency::currency_code,
    ALTER COLUMN currency SET DEFAULT 'USD';
