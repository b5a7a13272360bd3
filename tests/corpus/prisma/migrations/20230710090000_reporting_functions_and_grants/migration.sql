-- SQL-standard function body (PostgreSQL 14+): semicolons inside BEGIN ATOMIC ... END, no quoting.
CREATE FUNCTION reporting.order_total(p_order_id integer) RETURNS numeric
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT coalesce(sum("lineTotal"), 0) FROM public."LineItem" WHERE "orderId" = p_order_id;
END;

CREATE FUNCTION reporting.user_order_count(p_user_id integer) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$ SELECT count(*) FROM "Order" WHERE "userId" = p_user_id; $$;

REVOKE ALL ON FUNCTION reporting.user_order_count(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reporting.user_order_count(integer) TO CURRENT_USER;
GRANT SELECT ON reporting.sales_by_day TO PUBLIC;
REVOKE INSERT, UPDATE, DELETE ON "AuditEvent" FROM PUBLIC;
