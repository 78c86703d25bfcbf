//! Handlers registered by name, type-erased so the runtime can hold them together.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{AggCtx, AggregateHandler, Ctx, Emit, Event, FnError, HttpReply, HttpRequest};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why an invocation did not produce an [`Emit`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// The record's bytes are not a valid datum of the writer's schema for this event type.
    #[error("cannot decode the record as {event}: {message}")]
    Decode {
        /// The event type the handler takes.
        event: &'static str,
        /// What the decoder said.
        message: String,
    },
    /// The handler returned an error.
    #[error(transparent)]
    Handler(#[from] FnError),
}

/// A topic handler: decodes the Avro datum with the writer's schema, then runs the function.
pub type ErasedHandler =
    Arc<dyn Fn(Ctx, &[u8], &serde_avro_fast::Schema) -> BoxFuture<Result<Emit, InvokeError>> + Send + Sync>;

/// A topic handler of a JSON topic (`format = "json"`): decodes the JSON
/// value (Kafka Connect's payload, e.g. a Debezium change event), then runs the function.
pub type ErasedJsonHandler = Arc<dyn Fn(Ctx, serde_json::Value) -> BoxFuture<Result<Emit, InvokeError>> + Send + Sync>;

/// An HTTP handler.
pub type ErasedHttp = Arc<dyn Fn(HttpRequest) -> BoxFuture<HttpReply> + Send + Sync>;

/// A registered handler and the event type it takes.
#[derive(Clone)]
pub struct TopicHandler {
    /// The Avro full name of the input event.
    pub input: &'static str,
    /// The function, for Avro records.
    pub call: ErasedHandler,
    /// The same function, for JSON records.
    pub json: ErasedJsonHandler,
}

/// Every handler of a functions crate, by name.
///
/// One topic handler name may cover several event types: register a function
/// per event type under the same name, and a function of functions.toml that
/// reads several topics (`inputs = [...]`) runs, for each record, the one
/// registered for the event type of the record's topic.
///
/// ```
/// use kfn_sdk::{Ctx, Emit, Event, FnError, Registry};
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// # struct OrderCreated { order_id: String }
/// # impl Event for OrderCreated { const NAME: &'static str = "OrderCreated"; }
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// # struct OrderShipped { order_id: String }
/// # impl Event for OrderShipped { const NAME: &'static str = "OrderShipped"; }
/// async fn created(_: Ctx, order: OrderCreated) -> Result<Emit, FnError> {
///     Ok(Emit::one("changes", order.order_id.clone(), order))
/// }
/// async fn shipped(_: Ctx, order: OrderShipped) -> Result<Emit, FnError> {
///     Ok(Emit::one("changes", order.order_id.clone(), order))
/// }
/// // functions.toml: [functions.track] handler = "track", inputs = ["orders.created", "orders.shipped"]
/// let mut registry = Registry::default();
/// registry.handler("track", created).handler("track", shipped);
/// let events: Vec<_> = registry.topic_handlers("track").iter().map(|h| h.input).collect();
/// assert_eq!(events, ["OrderCreated", "OrderShipped"]);
/// assert!(registry.topic_handler_for("track", "OrderShipped").is_some());
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    /// Per name, one handler per event type, in registration order.
    topic: BTreeMap<&'static str, Vec<TopicHandler>>,
    http: BTreeMap<&'static str, ErasedHttp>,
    aggregate: BTreeMap<&'static str, AggregateHandler>,
}

impl Registry {
    /// Registers a topic handler under `name` for events of type `E`.
    ///
    /// Registering another event type under a name it already has adds that
    /// event type to the name (see [`Registry`]).
    ///
    /// # Panics
    ///
    /// If `name` already has a handler for `E`: two functions for one event
    /// would leave which one runs to registration order, so it is refused the
    /// first time the registry is built (as axum refuses a route twice).
    pub fn handler<E, F, Fut>(&mut self, name: &'static str, f: F) -> &mut Self
    where
        E: Event,
        F: Fn(Ctx, E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Emit, FnError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let avro = f.clone();
        let call: ErasedHandler =
            Arc::new(move |ctx, datum, schema| match serde_avro_fast::from_datum_slice::<E>(datum, schema) {
                Ok(event) => {
                    let fut = avro(ctx, event);
                    Box::pin(async move { fut.await.map_err(InvokeError::Handler) })
                }
                Err(e) => {
                    let err = InvokeError::Decode { event: E::NAME, message: e.to_string() };
                    Box::pin(std::future::ready(Err(err)))
                }
            });
        let json: ErasedJsonHandler = Arc::new(move |ctx, value| match serde_json::from_value::<E>(value) {
            Ok(event) => {
                let fut = f(ctx, event);
                Box::pin(async move { fut.await.map_err(InvokeError::Handler) })
            }
            Err(e) => {
                let err = InvokeError::Decode { event: E::NAME, message: e.to_string() };
                Box::pin(std::future::ready(Err(err)))
            }
        });
        let handlers = self.topic.entry(name).or_default();
        assert!(
            handlers.iter().all(|h| h.input != E::NAME),
            "topic handler {name:?} is registered twice for {} events",
            E::NAME
        );
        handlers.push(TopicHandler { input: E::NAME, call, json });
        self
    }

    /// Registers an HTTP handler under `name`.
    pub fn http<F, Fut>(&mut self, name: &'static str, f: F) -> &mut Self
    where
        F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HttpReply> + Send + 'static,
    {
        self.http.insert(name, Arc::new(move |req| Box::pin(f(req))));
        self
    }

    /// Registers an aggregate's fold under `name`: `(ctx, state, event) -> state`.
    ///
    /// `S` is the row of the aggregate's table (Avro-encoded with the table
    /// topic's schema); the first event of a key gets `None`.
    pub fn aggregate<E, S, F>(&mut self, name: &'static str, f: F) -> &mut Self
    where
        E: Event,
        S: Event + Clone + std::fmt::Debug,
        F: Fn(&AggCtx, Option<S>, E) -> Result<S, FnError> + Send + Sync + 'static,
    {
        self.aggregate.insert(name, AggregateHandler::new(f));
        self
    }

    /// Registers an aggregate's fold under `name` with a key function: kfn
    /// repartitions the aggregate's input by the keys `keys` returns for each
    /// event (through the internal topic `<function>.repartition`), so the fold
    /// sees each event once per key, with that key as [`AggCtx::key`].
    ///
    /// Zero keys drop the event, several fan it out (one sale per product of
    /// an order). A key function runs before the fold, may fail like a handler
    /// (a permanent error dead-letters the record) and must not do I/O. For a
    /// key that is just a field of the event, `group_by = "field"` in
    /// functions.toml needs no key function.
    ///
    /// ```
    /// use kfn_sdk::{AggCtx, Ctx, Event, FnError, Registry};
    /// # #[derive(Debug, serde::Serialize, serde::Deserialize)]
    /// # struct Order { order_id: String, products: Vec<String> }
    /// # impl Event for Order { const NAME: &'static str = "Order"; }
    /// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// # struct Count { n: i64 }
    /// # impl Event for Count { const NAME: &'static str = "Count"; }
    /// fn products(_: &Ctx, order: &Order) -> Result<Vec<String>, FnError> {
    ///     Ok(order.products.clone())
    /// }
    /// fn count(_: &AggCtx, state: Option<Count>, _: Order) -> Result<Count, FnError> {
    ///     Ok(Count { n: state.map_or(0, |c| c.n) + 1 })
    /// }
    /// let mut registry = Registry::default();
    /// registry.aggregate_by("orders_per_product", products, count);
    /// assert!(registry.aggregate_handler("orders_per_product").is_some_and(|h| h.key_function));
    /// ```
    pub fn aggregate_by<E, S, K, F>(&mut self, name: &'static str, keys: K, f: F) -> &mut Self
    where
        E: Event,
        S: Event + Clone + std::fmt::Debug,
        K: Fn(&Ctx, &E) -> Result<Vec<String>, FnError> + Send + Sync + 'static,
        F: Fn(&AggCtx, Option<S>, E) -> Result<S, FnError> + Send + Sync + 'static,
    {
        self.aggregate.insert(name, AggregateHandler::keyed_by(keys, f));
        self
    }

    /// Whether a handler of any kind has this name.
    pub fn contains(&self, name: &str) -> bool {
        self.topic.contains_key(name) || self.http.contains_key(name) || self.aggregate.contains_key(name)
    }

    /// The aggregate fold with this name.
    pub fn aggregate_handler(&self, name: &str) -> Option<&AggregateHandler> {
        self.aggregate.get(name)
    }

    /// Names of all aggregate folds.
    pub fn aggregate_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.aggregate.keys().copied()
    }

    /// The topic handler with this name: the first registered, which is the
    /// only one unless the name covers several event types (then see
    /// [`Registry::topic_handler_for`]).
    pub fn topic_handler(&self, name: &str) -> Option<&TopicHandler> {
        self.topic_handlers(name).first()
    }

    /// Every topic handler registered under `name`, one per event type, in registration order.
    pub fn topic_handlers(&self, name: &str) -> &[TopicHandler] {
        self.topic.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// The topic handler registered under `name` for events of `event` (an Avro full name).
    pub fn topic_handler_for(&self, name: &str, event: &str) -> Option<&TopicHandler> {
        self.topic_handlers(name).iter().find(|h| h.input == event)
    }

    /// The HTTP handler with this name.
    pub fn http_handler(&self, name: &str) -> Option<&ErasedHttp> {
        self.http.get(name)
    }

    /// Names of all topic handlers.
    pub fn topic_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.topic.keys().copied()
    }

    /// Names of all HTTP handlers.
    pub fn http_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.http.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Created {
        id: String,
    }
    impl Event for Created {
        const NAME: &'static str = "test.Created";
    }

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Shipped {
        id: String,
    }
    impl Event for Shipped {
        const NAME: &'static str = "test.Shipped";
    }

    async fn created(_: Ctx, e: Created) -> Result<Emit, FnError> {
        Ok(Emit::one("out", e.id.clone(), e))
    }

    async fn shipped(_: Ctx, e: Shipped) -> Result<Emit, FnError> {
        Ok(Emit::one("out", e.id.clone(), e))
    }

    #[test]
    fn one_name_covers_several_event_types_in_registration_order() {
        let mut registry = Registry::default();
        registry.handler("track", shipped).handler("track", created).handler("other", created);
        let events: Vec<_> = registry.topic_handlers("track").iter().map(|h| h.input).collect();
        assert_eq!(events, [Shipped::NAME, Created::NAME]);
        assert_eq!(registry.topic_handler("track").map(|h| h.input), Some(Shipped::NAME));
        assert_eq!(registry.topic_handler_for("track", Created::NAME).map(|h| h.input), Some(Created::NAME));
        assert!(registry.topic_handler_for("other", Shipped::NAME).is_none());
        assert!(registry.topic_handlers("nothing").is_empty());
        assert_eq!(registry.topic_names().collect::<Vec<_>>(), ["other", "track"]);
    }

    #[test]
    #[should_panic(expected = "topic handler \"track\" is registered twice for test.Created events")]
    fn one_event_type_twice_under_one_name_is_refused() {
        Registry::default().handler("track", created).handler("track", created);
    }
}
