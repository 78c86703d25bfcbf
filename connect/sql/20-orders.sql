-- The order view analysts query with SQL: one row per order, upserted by
-- order_id by Debezium's JDBC sink (connector orders-to-postgres) from the
-- topic orders.view. The sink could create it (schema.evolution=basic);
-- declaring it here keeps the column types and the key ours.

CREATE SCHEMA orders;

CREATE TABLE orders.orders (
    order_id     text PRIMARY KEY,
    customer_id  text NOT NULL,
    total        text NOT NULL,
    status       text NOT NULL,
    updated_at   bigint NOT NULL
);
