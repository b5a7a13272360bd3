-- A human-facing order number, separate from the primary key, starting at 100000.
CREATE SEQUENCE "Order_number_seq" AS INTEGER START WITH 100000 INCREMENT BY 1 MINVALUE 100000 NO MAXVALUE CACHE 1;

ALTER TABLE "Order" ADD COLUMN "number" INTEGER;

UPDATE "Order" SET "number" = nextval('"Order_number_seq"') WHERE "number" IS NULL;

ALTER TABLE "Order" ALTER COLUMN "number" SET DEFAULT nextval('"Order_number_seq"'),
                    ALTER COLUMN "number" SET NOT NULL;

ALTER SEQUENCE "Order_number_seq" OWNED BY "Order"."number";

-- CreateIndex
CREATE UNIQUE INDEX "Order_number_key" ON "Order"("number");
