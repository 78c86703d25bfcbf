-- The shop's catalog, the source of truth Debezium captures into the topic
-- shop.products (one record per change, keyed by product_id).
-- `kfn dev --connect` and the tests run the files of this folder in name order
-- on a fresh database.

CREATE SCHEMA shop;

CREATE TABLE shop.products (
    product_id  text PRIMARY KEY,
    name        text NOT NULL,
    -- numeric, not float: Debezium sends it as a string ("19.99", decimal.handling.mode=string).
    price       numeric(12, 2) NOT NULL CHECK (price > 0),
    stock       integer NOT NULL CHECK (stock >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Deletes carry the whole old row (not only the key) in Debezium's `before`.
ALTER TABLE shop.products REPLICA IDENTITY FULL;

-- Today's catalog (functions/src/catalog.rs).
INSERT INTO shop.products (product_id, name, price, stock) VALUES
    ('SKU-001', 'Espresso beans 1 kg', 19.99, 500),
    ('SKU-002', 'Burr grinder', 129.00, 40),
    ('SKU-003', 'Milk frother', 34.50, 120),
    ('SKU-004', 'Espresso machine', 899.00, 15),
    ('SKU-005', 'Tamper', 25.00, 200),
    ('SKU-006', 'Knock box', 18.75, 80),
    ('SKU-007', 'Pour-over kettle', 59.90, 60),
    ('SKU-008', 'Paper filters (100)', 4.99, 1000),
    ('SKU-009', 'Cup set of 6', 39.99, 75),
    ('SKU-010', 'Descaler', 12.50, 300),
    ('SKU-011', 'Commercial roaster', 4500.00, 3),
    ('SKU-012', 'Gift card', 50.00, 10000);
