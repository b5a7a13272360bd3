-- Addresses are visible to their owner only when the API sets app.user_id (the table owner,
-- which runs migrations and jobs, is not subject to the policy).
ALTER TABLE "Address" ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Address_owner" ON "Address"
    USING ("userId" = nullif(current_setting('app.user_id', true), '')::integer)
    WITH CHECK ("userId" = nullif(current_setting('app.user_id', true), '')::integer);
