//! The events of the order system, one Rust type per Avro schema in `schemas/`.
//!
//! Each type is a serde struct that `serde_avro_fast` reads and writes with the
//! schema of its `.avsc` file: `decimal(10,2)` fields are [`Decimal`] (written
//! rescaled to the schema's scale), `timestamp-millis` fields are `i64`
//! milliseconds since the Unix epoch, Avro enums are Rust enums whose serde
//! names are the Avro symbols.
//!
//! Each type also derives its own Avro schema ([`BuildSchema`]); the tests
//! compare that schema with the `.avsc` file (structure, names, logical types)
//! so the files and the types cannot drift apart silently.
//!
//! ```
//! use kfn_functions::events::OrderCreated;
//! use kfn_sdk::Event;
//! assert_eq!(OrderCreated::NAME, "com.tutorial.orders.OrderCreated");
//! ```

use kfn_sdk::Event;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_avro_derive::BuildSchema;

#[cfg(test)]
mod tests;

/// The Avro namespace of every event of the order system.
pub const NAMESPACE: &str = "com.tutorial.orders";

/// Every event's Avro full name and its schema file under `schemas/`.
pub fn schema_files() -> &'static [(&'static str, &'static str)] {
    &[
        ("com.tutorial.orders.OrderCreated", "order_created.avsc"),
        ("com.tutorial.orders.OrderValidated", "order_validated.avsc"),
        ("com.tutorial.orders.OrderRejected", "order_rejected.avsc"),
        ("com.tutorial.orders.PaymentProcessed", "payment_processed.avsc"),
        ("com.tutorial.orders.PaymentFailed", "payment_failed.avsc"),
        ("com.tutorial.orders.InventoryReserved", "inventory_reserved.avsc"),
        ("com.tutorial.orders.ShipmentCreated", "shipment_created.avsc"),
        ("com.tutorial.orders.ShipmentDispatched", "shipment_dispatched.avsc"),
        ("com.tutorial.orders.Notification", "notification.avsc"),
        ("com.tutorial.orders.OrderMetrics", "order_metrics.avsc"),
        ("com.tutorial.orders.ProductSales", "product_sales.avsc"),
        ("com.tutorial.orders.OrderStatusChanged", "order_status_changed.avsc"),
        ("com.tutorial.orders.OrderStatus", "order_status.avsc"),
        ("com.tutorial.orders.ProductChange", "product_change.avsc"),
        ("com.tutorial.orders.OrderView", "order_view.avsc"),
        ("com.tutorial.orders.StockReservation", "stock_reservation.avsc"),
    ]
}

/// Declares a Rust enum for an Avro enum: the serde names and the derived
/// schema's symbols come from the same list, so they cannot disagree.
macro_rules! avro_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $symbol:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $symbol)] $variant, )+
        }

        impl $name {
            /// Every variant, in the order of the schema's symbols.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The Avro symbol of this variant.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $symbol,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl BuildSchema for $name {
            fn append_schema(builder: &mut serde_avro_derive::SchemaBuilder) {
                use serde_avro_derive::serde_avro_fast::schema::{Enum, Name};
                let name = Name::from_fully_qualified_name(concat!("com.tutorial.orders.", stringify!($name)));
                let symbols = vec![$($symbol.to_owned(),)+];
                builder.nodes.push(Enum::new(name, symbols).into());
            }
            type TypeLookup = Self;
        }
    };
}

/// Implements [`Event`] with the full name `com.tutorial.orders.<Type>`.
macro_rules! events {
    ($($name:ident),+ $(,)?) => {
        $(impl Event for $name {
            const NAME: &'static str = concat!("com.tutorial.orders.", stringify!($name));
        })+
    };
}

events!(
    OrderCreated,
    OrderValidated,
    OrderRejected,
    PaymentProcessed,
    PaymentFailed,
    InventoryReserved,
    ShipmentCreated,
    ShipmentDispatched,
    Notification,
    OrderMetrics,
    ProductSales,
    OrderStatusChanged,
    OrderStatus,
    ProductChange,
    OrderView,
    StockReservation,
);

/// One line of an order: a product, how many, and the price of one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct OrderItem {
    /// Catalog id of the product.
    pub product_id: String,
    /// How many units were ordered (at least 1).
    pub quantity: i32,
    /// Price of one unit, `decimal(10,2)`.
    #[avro_schema(scale = 2, precision = 10)]
    pub unit_price: Decimal,
}

impl OrderItem {
    /// `quantity * unit_price`.
    pub fn line_total(&self) -> Decimal {
        Decimal::from(self.quantity) * self.unit_price
    }
}

/// An order accepted by the Order API (`orders.created`, keyed by order_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct OrderCreated {
    /// Unique id of the order.
    pub order_id: String,
    /// The customer who placed the order.
    pub customer_id: String,
    /// The ordered lines.
    pub items: Vec<OrderItem>,
    /// Sum of the line totals, `decimal(10,2)`.
    #[avro_schema(scale = 2, precision = 10)]
    pub total_amount: Decimal,
    /// Where the order is shipped.
    pub shipping_address: String,
    /// When the order was accepted, ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub created_at: i64,
}

/// An order that passed validation (`orders.validated`, keyed by order_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct OrderValidated {
    /// Id of the order.
    pub order_id: String,
    /// The customer who placed the order.
    pub customer_id: String,
    /// The ordered lines.
    pub items: Vec<OrderItem>,
    /// The amount to charge, `decimal(10,2)`.
    #[avro_schema(scale = 2, precision = 10)]
    pub total_amount: Decimal,
    /// Where the order is shipped.
    pub shipping_address: String,
    /// When the order was accepted, ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub created_at: i64,
    /// When the order was validated, ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub validated_at: i64,
}

avro_enum! {
    /// Why an order was rejected.
    RejectionReason {
        /// The order has no items.
        EmptyOrder = "EMPTY_ORDER",
        /// The order has more items than one order may have.
        TooManyItems = "TOO_MANY_ITEMS",
        /// A required text field is empty or too long.
        InvalidField = "INVALID_FIELD",
        /// A quantity is below 1.
        InvalidQuantity = "INVALID_QUANTITY",
        /// A product is not in the catalog.
        UnknownProduct = "UNKNOWN_PRODUCT",
        /// More units of a product were ordered than are in stock.
        InsufficientStock = "INSUFFICIENT_STOCK",
        /// A unit price differs from the catalog's.
        PriceMismatch = "PRICE_MISMATCH",
        /// The total is not the sum of the lines.
        TotalMismatch = "TOTAL_MISMATCH",
        /// The total does not fit `decimal(10,2)` or is negative.
        TotalOutOfRange = "TOTAL_OUT_OF_RANGE",
    }
}

/// An order that failed validation (`orders.rejected`, keyed by order_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct OrderRejected {
    /// Id of the order.
    pub order_id: String,
    /// The customer who placed the order.
    pub customer_id: String,
    /// The first rule the order broke.
    pub reason: RejectionReason,
    /// The reason in words.
    pub message: String,
    /// The product the reason is about, when it is about one.
    pub product_id: Option<String>,
    /// The order's total as submitted, `decimal(10,2)`.
    #[avro_schema(scale = 2, precision = 10)]
    pub total_amount: Decimal,
    /// When the order was rejected, ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub rejected_at: i64,
}

/// A validated order whose amount was charged (`payments.processed`, keyed by order_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct PaymentProcessed {
    /// Id of the order.
    pub order_id: String,
    /// The customer who was charged.
    pub customer_id: String,
    /// The gateway's id of the charge, the same for every retry of the order.
    pub payment_id: String,
    /// The amount charged, `decimal(10,2)`.
    #[avro_schema(scale = 2, precision = 10)]
    pub amount: Decimal,
    /// The ordered lines.
    pub items: Vec<OrderItem>,
    /// Where the order is shipped.
    pub shipping_address: String,
    /// When the charge succeeded, ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub processed_at: i64,
}

avro_enum! {
    /// Why the gateway declined a charge.
    PaymentFailureReason {
        /// The card issuer declined.
        CardDeclined = "CARD_DECLINED",
        /// The amount is above what one charge may be.
        AmountLimitExceeded = "AMOUNT_LIMIT_EXCEEDED",
    }
}

/// A validated order whose charge was declined (`payments.failed`, keyed by order_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct PaymentFailed {
    /// Id of the order.
    pub order_id: String,
    /// The customer whose charge was declined.
    pub customer_id: String,
    /// The amount that could not be charged, `decimal(10,2)`.
    #[avro_schema(scale = 2, precision = 10)]
    pub amount: Decimal,
    /// The decline code.
    pub reason: PaymentFailureReason,
    /// The decline in words.
    pub message: String,
    /// When the charge was declined, ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub failed_at: i64,
}

/// Stock of one product set aside for one paid order line
/// (`inventory.reserved`, keyed by product_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct InventoryReserved {
    /// Id of the reservation, derived from the order id and the line.
    pub reservation_id: String,
    /// Catalog id of the reserved product.
    pub product_id: String,
    /// The order the stock is reserved for.
    pub order_id: String,
    /// The customer who placed the order.
    pub customer_id: String,
    /// How many units are reserved.
    pub quantity: i32,
    /// Price of one unit as ordered, `decimal(10,2)`.
    #[avro_schema(scale = 2, precision = 10)]
    pub unit_price: Decimal,
    /// When the stock was reserved, ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub reserved_at: i64,
}

/// One line of a shipment: a product and how many units to pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct ShipmentItem {
    /// Catalog id of the product.
    pub product_id: String,
    /// How many units to pack.
    pub quantity: i32,
}

/// A shipment to pack for a paid order (`shipments.created`, keyed by order_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct ShipmentCreated {
    /// Id of the shipment, derived from the order id.
    pub shipment_id: String,
    /// The order being shipped.
    pub order_id: String,
    /// The customer the shipment goes to.
    pub customer_id: String,
    /// What to pack.
    pub items: Vec<ShipmentItem>,
    /// Where the shipment goes.
    pub shipping_address: String,
    /// When the shipment was created, ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub created_at: i64,
}

/// A shipment handed to a carrier (`shipments.dispatched`, keyed by order_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct ShipmentDispatched {
    /// Id of the shipment.
    pub shipment_id: String,
    /// The order being shipped.
    pub order_id: String,
    /// The customer the shipment goes to.
    pub customer_id: String,
    /// Name of the carrier.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking_number: String,
    /// When the shipment was dispatched, ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub dispatched_at: i64,
}

avro_enum! {
    /// How a message reaches the customer.
    NotificationChannel {
        /// An e-mail.
        Email = "EMAIL",
        /// A text message.
        Sms = "SMS",
    }
}

avro_enum! {
    /// What happened to the order a notification is about.
    NotificationKind {
        /// The order was rejected.
        OrderRejected = "ORDER_REJECTED",
        /// The payment was declined.
        PaymentFailed = "PAYMENT_FAILED",
        /// The payment went through.
        PaymentConfirmed = "PAYMENT_CONFIRMED",
        /// The shipment left the warehouse.
        ShipmentDispatched = "SHIPMENT_DISPATCHED",
    }
}

/// A message to send to a customer (`notifications.outbound`, keyed by customer_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct Notification {
    /// Id of the message, derived from the order id and kind.
    pub notification_id: String,
    /// The customer to notify.
    pub customer_id: String,
    /// The order the message is about.
    pub order_id: String,
    /// How to send the message.
    pub channel: NotificationChannel,
    /// What the message is about.
    pub kind: NotificationKind,
    /// The text to send.
    pub message: String,
    /// When the notification was created, ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub created_at: i64,
}

/// Orders created in one tumbling time window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct OrderMetrics {
    /// Start of the window (inclusive), ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub window_start: i64,
    /// End of the window (exclusive), ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub window_end: i64,
    /// Orders created in the window.
    pub order_count: i64,
    /// Sum of the orders' totals, `decimal(18,2)`.
    #[avro_schema(scale = 2, precision = 18)]
    pub total_revenue: Decimal,
    /// `total_revenue / order_count` rounded to cents, `decimal(10,2)`.
    #[avro_schema(scale = 2, precision = 10)]
    pub avg_order_value: Decimal,
}

/// Running sales of one product, keyed by product_id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct ProductSales {
    /// Catalog id of the product.
    pub product_id: String,
    /// Units sold so far.
    pub total_quantity: i64,
    /// Sum of quantity * unit_price over the units sold, `decimal(18,2)`.
    #[avro_schema(scale = 2, precision = 18)]
    pub total_revenue: Decimal,
}

avro_enum! {
    /// Where an order is in its life; see [`OrderState::is_terminal`].
    OrderState {
        /// Accepted by the order API.
        Created = "created",
        /// Its products exist and are in stock.
        Validated = "validated",
        /// Refused by validation (terminal).
        Rejected = "rejected",
        /// Charged successfully.
        PaymentProcessed = "payment_processed",
        /// The charge was declined (terminal).
        PaymentFailed = "payment_failed",
        /// Stock reserved and a shipment created.
        ShipmentCreated = "shipment_created",
        /// Handed to a carrier (terminal).
        Dispatched = "dispatched",
    }
}

impl OrderState {
    /// Whether the order can leave this status: terminal statuses are final.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Rejected | Self::PaymentFailed | Self::Dispatched)
    }

    /// The step of the state machine this status is reached at (created is 0,
    /// dispatched 4): orders changes of the same millisecond.
    pub fn step(self) -> u8 {
        match self {
            Self::Created => 0,
            Self::Validated => 1,
            Self::Rejected | Self::PaymentProcessed => 2,
            Self::PaymentFailed | Self::ShipmentCreated => 3,
            Self::Dispatched => 4,
        }
    }
}

/// One step of an order's life (`orders.status-changes`, keyed by order_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct OrderStatusChanged {
    /// The order whose status changed.
    pub order_id: String,
    /// The status the order entered.
    pub status: OrderState,
    /// When the order entered it (the causing event's time), ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub at: i64,
    /// What happened, in words.
    pub detail: String,
}

/// One status an order entered, in [`OrderStatus::history`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct StatusChange {
    /// The status entered.
    pub status: OrderState,
    /// When the order entered it, ms since the epoch.
    #[avro_schema(logical_type = "timestamp-millis")]
    pub at: i64,
    /// What happened, in words.
    pub detail: String,
}

/// An order's current status and history (table `orders.status`, keyed by order_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct OrderStatus {
    /// Id of the order.
    pub order_id: String,
    /// The current status.
    pub status: OrderState,
    /// Every change, in event-time order.
    pub history: Vec<StatusChange>,
}

/// A row of PostgreSQL's `shop.products` as Debezium writes it: prices as
/// decimal text (`decimal.handling.mode=string`), times as ISO-8601 text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct Product {
    /// Catalog id, as orders name it.
    pub product_id: String,
    /// Name for people.
    pub name: String,
    /// Price of one unit, e.g. `"19.99"`.
    pub price: String,
    /// Units in stock.
    pub stock: i32,
    /// When the row last changed.
    pub updated_at: String,
}

/// One change of `shop.products`, a record of the JSON topic `shop.products`
/// (Debezium's envelope; its source and timing fields are not read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct ProductChange {
    /// The row before: None for inserts and snapshot reads.
    pub before: Option<Product>,
    /// The row after: None for deletes.
    pub after: Option<Product>,
    /// `r` (snapshot read), `c`, `u` or `d`.
    pub op: String,
}

/// Half of a row of PostgreSQL's `orders.orders` (JSON topic `orders.view`):
/// None fields are left out, so the JDBC sink's upsert keeps their columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct OrderView {
    /// Id of the order: the row's key.
    pub order_id: String,
    /// Who ordered (from OrderCreated).
    pub customer_id: Option<String>,
    /// The total as decimal text (from OrderCreated).
    pub total: Option<String>,
    /// The current status (from the tracking table).
    pub status: Option<String>,
    /// When the order entered that status, ms since the epoch.
    pub updated_at: Option<i64>,
}

/// Stock taken by one line of a paid order (JSON topic `inventory.reservations`,
/// into PostgreSQL's `shop.reservations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BuildSchema)]
#[avro_schema(namespace = "com.tutorial.orders")]
pub struct StockReservation {
    /// `<order_id>/<line>`.
    pub reservation_id: String,
    /// The product taken from stock.
    pub product_id: String,
    /// The order it is for.
    pub order_id: String,
    /// Units taken.
    pub quantity: i32,
    /// When inventory reserved it, ms since the epoch.
    pub reserved_at: i64,
}
