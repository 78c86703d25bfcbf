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

/// An HTTP handler.
pub type ErasedHttp = Arc<dyn Fn(HttpRequest) -> BoxFuture<HttpReply> + Send + Sync>;

/// A registered handler and the event type it takes.
#[derive(Clone)]
pub struct TopicHandler {
    /// The Avro full name of the input event.
    pub input: &'static str,
    /// The function.
    pub call: ErasedHandler,
}

/// Every handler of a functions crate, by name.
#[derive(Clone, Default)]
pub struct Registry {
    topic: BTreeMap<&'static str, TopicHandler>,
    http: BTreeMap<&'static str, ErasedHttp>,
    aggregate: BTreeMap<&'static str, AggregateHandler>,
}

impl Registry {
    /// Registers a topic handler under `name`.
    pub fn handler<E, F, Fut>(&mut self, name: &'static str, f: F) -> &mut Self
    where
        E: Event,
        F: Fn(Ctx, E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Emit, FnError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let call: ErasedHandler =
            Arc::new(move |ctx, datum, schema| match serde_avro_fast::from_datum_slice::<E>(datum, schema) {
                Ok(event) => {
                    let fut = f(ctx, event);
                    Box::pin(async move { fut.await.map_err(InvokeError::Handler) })
                }
                Err(e) => {
                    let err = InvokeError::Decode { event: E::NAME, message: e.to_string() };
                    Box::pin(std::future::ready(Err(err)))
                }
            });
        self.topic.insert(name, TopicHandler { input: E::NAME, call });
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

    /// The topic handler with this name.
    pub fn topic_handler(&self, name: &str) -> Option<&TopicHandler> {
        self.topic.get(name)
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
