-- AlterEnum: SHIPPED is called FULFILLED in the product now (ALTER TYPE ... RENAME VALUE, PostgreSQL 10+).
ALTER TYPE "OrderStatus" RENAME VALUE 'SHIPPED' TO 'FULFILLED';
