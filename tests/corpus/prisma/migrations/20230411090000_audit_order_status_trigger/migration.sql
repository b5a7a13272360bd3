CREATE FUNCTION audit_order_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $function$
DECLARE
  note text := 'status change; filed under the order''s month';
BEGIN
  IF NEW."status" IS DISTINCT FROM OLD."status" THEN
    INSERT INTO "AuditEvent" ("occurredAt", "actorId", "action", "payload")
    VALUES (NEW."createdAt", NEW."userId", 'order.status',
            jsonb_build_object('from', OLD."status", 'to', NEW."status", 'note', note));
  END IF;
  RETURN NEW;
END
$function$;

CREATE TRIGGER order_status_audit
    AFTER UPDATE OF "status" ON "Order"
    FOR EACH ROW EXECUTE PROCEDURE audit_order_change();

-- Orders paid on the first day shipped; the trigger files an AuditEvent for each.
UPDATE "Order" SET "status" = 'SHIPPED' WHERE "status" = 'PAID' AND "createdAt" < '2023-01-06';
