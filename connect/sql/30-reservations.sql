-- Stock reservations, written by Debezium's JDBC sink (connector
-- reservations-to-postgres) from the topic inventory.reservations, which the
-- inventory function writes: one row per line of a paid order, upserted by
-- reservation_id (<order_id>/<line>), so a redelivered reservation is written
-- again, not twice.

CREATE TABLE shop.reservations (
    reservation_id  text PRIMARY KEY,
    product_id      text NOT NULL,
    order_id        text NOT NULL,
    quantity        integer NOT NULL,
    reserved_at     bigint NOT NULL
);

-- A new reservation takes its units off the product's stock; the change goes
-- out through Debezium like any other, and validation sees the new stock.
-- Only on INSERT: the sink's upsert of a reservation already written is an
-- UPDATE and takes nothing again. Never below zero: validation checks stock
-- when an order arrives, not when it is paid, so two orders may both pass for
-- the last units (the sink must not fail on that; see docs/connect.md).
CREATE FUNCTION shop.take_reserved_stock() RETURNS trigger AS $$
BEGIN
    UPDATE shop.products
       SET stock = GREATEST(stock - NEW.quantity, 0), updated_at = now()
     WHERE product_id = NEW.product_id;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER take_reserved_stock AFTER INSERT ON shop.reservations
    FOR EACH ROW EXECUTE FUNCTION shop.take_reserved_stock();
