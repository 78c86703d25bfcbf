//! The rekey stage of an aggregate that groups by a key its input is not
//! keyed by: a topic handler, per input, whose code is the fold's key
//! extraction (`group_by` field or key function) and whose one output is the
//! internal topic `<function>.repartition`.
//!
//! It runs as any topic function (config's [`FunctionSpec::rekey_stage`]):
//! ingress, the layer stack (decode, retry, observe, panic catch), egress and
//! delivery under the aggregate's guarantee — under exactly_once the
//! re-keyed records and the input offsets commit in one transaction, and the
//! fold stage reads the internal topic read_committed, so each input record
//! is folded once per key end to end.

use std::sync::Arc;

use kfn_sdk::{AggregateHandler, FnError, InvokeError, TopicHandler};

use crate::config::{FunctionSpec, GroupBy};

/// The rekey stage's handler for each input of `stage`, from the aggregate's
/// `fold` and how it groups (`group_by`).
pub fn rekey_handlers(
    stage: &FunctionSpec,
    fold: &AggregateHandler,
    group_by: &GroupBy,
) -> Vec<(String, TopicHandler)> {
    let handler = rekey_handler(fold, group_by);
    stage.inputs().iter().map(|input| (input.clone(), handler.clone())).collect()
}

/// The fold's rekey as a topic handler: the event once per grouping key, to the internal topic.
fn rekey_handler(fold: &AggregateHandler, group_by: &GroupBy) -> TopicHandler {
    let rekey = fold.rekey.clone();
    let field: Option<Arc<str>> = group_by.field().map(Arc::from);
    TopicHandler {
        input: fold.input,
        call: Arc::new(move |ctx, datum, schema| {
            let emitted = rekey(&ctx, datum, schema, field.as_deref());
            Box::pin(std::future::ready(emitted))
        }),
        // Validation gives an aggregate Avro inputs only (its fold decodes Avro).
        json: Arc::new(|_, _| {
            Box::pin(std::future::ready(Err(InvokeError::Handler(FnError::permanent(
                "an aggregate's rekey stage reads Avro records only",
            )))))
        }),
    }
}

#[cfg(test)]
mod tests {
    use kfn_sdk::{AggCtx, Ctx, Event, Registry, REPARTITION_OUTPUT};

    use super::*;
    use crate::config::{AggregateSpec, FunctionKind, Guarantee, Ordering, Repartition, RetryPolicy};

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Sale {
        order_id: String,
        store: i64,
        products: Vec<String>,
    }
    impl Event for Sale {
        const NAME: &'static str = "kfn.test.Sale";
    }

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct Count {
        n: i64,
    }
    impl Event for Count {
        const NAME: &'static str = "kfn.test.Count";
    }

    const SCHEMA: &str = r#"{"type": "record", "name": "Sale", "namespace": "kfn.test", "fields": [
        {"name": "order_id", "type": "string"}, {"name": "store", "type": "long"},
        {"name": "products", "type": {"type": "array", "items": "string"}}]}"#;

    fn count(_: &AggCtx, state: Option<Count>, _: Sale) -> Result<Count, FnError> {
        Ok(Count { n: state.map_or(0, |c| c.n) + 1 })
    }

    fn products(_: &Ctx, sale: &Sale) -> Result<Vec<String>, FnError> {
        Ok(sale.products.clone())
    }

    fn aggregate(group_by: GroupBy) -> FunctionSpec {
        FunctionSpec {
            name: "sales".into(),
            handler: "count".into(),
            kind: FunctionKind::Topic { inputs: vec!["shop.sales".into(), "web.sales".into()] },
            outputs: [("table".to_string(), "sales.counts".to_string())].into_iter().collect(),
            guarantee: Guarantee::ExactlyOnce,
            ordering: Ordering::Key,
            max_in_flight: 8,
            retry: RetryPolicy::default(),
            dead_letter: Some("sales.dlq".into()),
            start_from: None,
            doc: None,
            aggregate: Some(AggregateSpec {
                table: "sales.counts".into(),
                window: None,
                grace: std::time::Duration::ZERO,
                query_path: None,
                repartition: Some(Repartition { topic: "sales.repartition".into(), group_by }),
            }),
            tables: Default::default(),
        }
    }

    async fn keys(handler: &TopicHandler, sale: &Sale) -> Result<Vec<String>, InvokeError> {
        let schema: serde_avro_fast::Schema = SCHEMA.parse().unwrap();
        let datum =
            serde_avro_fast::to_datum_vec(sale, &mut serde_avro_fast::ser::SerializerConfig::new(&schema)).unwrap();
        let emit = (handler.call)(Ctx::default(), &datum, &schema).await?;
        assert!(emit.events.iter().all(|e| e.output == REPARTITION_OUTPUT));
        Ok(emit.events.iter().map(|e| String::from_utf8(e.key.clone().unwrap().to_vec()).unwrap()).collect())
    }

    #[test]
    fn the_stages_share_the_aggregates_policies_and_split_its_topics() {
        let spec = aggregate(GroupBy::Field("store".into()));
        let stage = spec.rekey_stage().unwrap();
        assert_eq!(stage.name, "sales.repartition");
        assert_eq!(stage.group_id(), "kfn.sales.repartition");
        assert_eq!(stage.group_id(), spec.repartition_group_id());
        assert_eq!(stage.inputs(), ["shop.sales", "web.sales"]);
        assert_eq!(stage.outputs.get(REPARTITION_OUTPUT).map(String::as_str), Some("sales.repartition"));
        assert_eq!((stage.guarantee, stage.ordering), (Guarantee::ExactlyOnce, Ordering::Partition));
        assert_eq!(stage.dead_letter.as_deref(), Some("sales.dlq"));
        assert!(stage.aggregate.is_none());
        let fold = spec.fold_stage();
        assert_eq!((fold.name.as_str(), fold.group_id()), ("sales", "kfn.sales".to_string()));
        assert_eq!(fold.inputs(), ["sales.repartition"]);
        assert_eq!(fold.outputs, spec.outputs);

        let mut plain = spec.clone();
        plain.aggregate.as_mut().unwrap().repartition = None;
        assert!(plain.rekey_stage().is_none());
        assert_eq!(plain.fold_stage().inputs(), ["shop.sales", "web.sales"]);
    }

    #[tokio::test]
    async fn a_field_or_a_key_function_gives_each_records_keys() {
        let sale = Sale { order_id: "o-1".into(), store: 42, products: vec!["a".into(), "b".into()] };
        let mut registry = Registry::default();
        registry.aggregate("count", count).aggregate_by("count_by_product", products, count);

        let by_store = aggregate(GroupBy::Field("store".into()));
        let handlers = rekey_handlers(
            &by_store.rekey_stage().unwrap(),
            registry.aggregate_handler("count").unwrap(),
            &GroupBy::Field("store".into()),
        );
        assert_eq!(handlers.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["shop.sales", "web.sales"]);
        assert_eq!(keys(&handlers[0].1, &sale).await.unwrap(), ["42"]);
        let by_order = rekey_handler(registry.aggregate_handler("count").unwrap(), &GroupBy::Field("order_id".into()));
        assert_eq!(keys(&by_order, &sale).await.unwrap(), ["o-1"]);

        let by_product = rekey_handler(registry.aggregate_handler("count_by_product").unwrap(), &GroupBy::KeyFunction);
        assert_eq!(keys(&by_product, &sale).await.unwrap(), ["a", "b"]);
        let none = Sale { products: vec![], ..sale };
        assert!(keys(&by_product, &none).await.unwrap().is_empty(), "no key: nothing to fold");

        // A fold registered without a key function cannot be asked for one.
        let err = keys(&rekey_handler(registry.aggregate_handler("count").unwrap(), &GroupBy::KeyFunction), &none)
            .await
            .unwrap_err();
        assert!(matches!(err, InvokeError::Handler(ref e) if e.kind == kfn_sdk::FnErrorKind::Permanent), "{err:?}");
    }
}
