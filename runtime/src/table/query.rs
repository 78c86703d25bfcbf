//! Pull queries: `GET <path>` (every row, a JSON array) and `GET <path>/{key}`
//! (one row, 404 when there is none), served by the HTTP trigger.

use std::collections::HashMap;
use std::sync::Arc;

use kfn_sdk::{ErasedHttp, HttpReply};

use super::TableView;
use crate::invoker::outputs::Outputs;
use crate::trigger::http::Route;

/// The two routes of the pull query of `function` at `path` over `view`.
pub fn query_routes(function: &str, path: &str, view: Arc<TableView>) -> [Route; 2] {
    let path = path.trim_end_matches('/').to_string();
    let all: ErasedHttp = {
        let view = view.clone();
        Arc::new(move |_req| {
            let rows: Vec<serde_json::Value> = view.rows().into_iter().map(|(_, row)| row).collect();
            Box::pin(std::future::ready(HttpReply::json(200, serde_json::Value::Array(rows).to_string())))
        })
    };
    let one: ErasedHttp = Arc::new(move |req| {
        let key = req.params.get("key").cloned().unwrap_or_default();
        let reply = match view.get(&key) {
            Some(row) => HttpReply::json(200, row.to_string()),
            None => HttpReply::error(404, None, &format!("no row with key {key:?} in {}", view.topic())),
        };
        Box::pin(std::future::ready(reply))
    });
    let route = |path: String, handler| Route {
        method: "GET".into(),
        path,
        function: function.to_string(),
        handler,
        outputs: Outputs::new(function, HashMap::new()),
        observed: false,
        producer: None,
    };
    [route(path.clone(), all), route(format!("{path}/{{key}}"), one)]
}
