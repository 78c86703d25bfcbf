-- The order view analysts query with SQL: one row per order, upserted by
-- order_id by Debezium's JDBC sink (connector orders-to-postgres) from the
-- topic orders.view. The sink could create it (schema.evolution=basic);
-- declaring it here keeps the column types and the key ours.

CREATE SCHEMA orders;

CREATE TABLE orders.orders (
    order_id     text PRIMARY KEY,
    -- Rows arrive in two halves, in either order (see docs/connect.md): who
    -- ordered and the total (from orders.created), the status and when it
    -- changed (from orders.status). Each upsert sets only its own columns.
    customer_id  text,
    total        text,
    status       text,
    updated_at   bigint
);
