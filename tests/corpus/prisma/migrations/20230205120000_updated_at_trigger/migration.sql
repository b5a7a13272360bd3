-- Keep "updatedAt" right even for writes that bypass Prisma (psql; cron jobs; reports).
CREATE OR REPLACE FUNCTION "set_updated_at"() RETURNS TRIGGER AS $$
BEGIN
  -- Prisma sets it too; this covers raw SQL writes; keep it cheap.
  NEW."updatedAt" := CURRENT_TIMESTAMP;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER "User_set_updated_at"
BEFORE UPDATE ON "User"
FOR EACH ROW
EXECUTE FUNCTION "set_updated_at"();

COMMENT ON FUNCTION "set_updated_at"() IS 'Trigger function: stamps "updatedAt"; used by every table that has one.';
