-- On its own: a new enum value cannot be used in the transaction that adds it.
ALTER TYPE currency_code ADD VALUE IF NOT EXISTS 'CHF' AFTER 'GBP';
