//! The Confluent Schema Registry REST API: routes, request bodies, answers.
//!
//! Each handler parses its input (bad input is a 4xx, never a 500), then
//! either reads the caught-up [`State`] or hands a plan from [`super::ops`] to
//! [`Store::write`].

use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Map, Value};

use super::compat::{check, CompatibilityLevel};
use super::error::ApiErrorReply;
use super::ops;
use super::schema::AvroSchema;
use super::state::{parse_version, State, StoredVersion};
use super::store::Store;

/// A request as the API sees it.
#[derive(Debug)]
pub struct ApiRequest {
    /// The method.
    pub method: Method,
    /// The path's segments, percent-decoded (`/subjects/a%2Fb` is `["subjects", "a/b"]`).
    pub segments: Vec<String>,
    /// The query's pairs, percent-decoded.
    pub query: Vec<(String, String)>,
    /// The body (at most the configured limit).
    pub body: Bytes,
}

impl ApiRequest {
    /// Whether the query has `name=true`.
    pub fn flag(&self, name: &str) -> bool {
        self.query.iter().any(|(k, v)| k == name && v.eq_ignore_ascii_case("true"))
    }

    /// The value of `name` in the query.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// An answer: a JSON value, or raw JSON text (a schema as registered).
#[derive(Debug)]
pub enum ApiReply {
    /// 200 with this JSON.
    Json(serde_json::Value),
    /// 200 with this text, already JSON.
    Raw(String),
}

type Answer = Result<ApiReply, ApiErrorReply>;

/// Answers one request.
pub async fn route(store: &Store, request: ApiRequest) -> Answer {
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let method = &request.method;
    match (method, segments.as_slice()) {
        (&Method::GET, []) => Ok(ApiReply::Json(json!({}))),
        (&Method::GET, ["subjects"]) => {
            let (deleted, prefix) = (request.flag("deleted"), request.param("subjectPrefix").unwrap_or(""));
            Ok(ApiReply::Json(json!(store.read(|s| s.subjects(deleted, prefix)).await)))
        }
        (&Method::GET, ["subjects", subject, "versions"]) => {
            let deleted = request.flag("deleted");
            store.read(|s| s.versions(subject, deleted)).await.map(|v| ApiReply::Json(json!(v)))
        }
        (&Method::POST, ["subjects", subject, "versions"]) => register(store, subject, &request).await,
        (&Method::GET, ["subjects", subject, "versions", version]) => {
            let (spec, deleted) = (parse_version(version)?, request.flag("deleted"));
            store.read(|s| s.version(subject, spec, deleted).map(|(n, v)| version_json(subject, n, v))).await
        }
        (&Method::GET, ["subjects", subject, "versions", version, "schema"]) => {
            let (spec, deleted) = (parse_version(version)?, request.flag("deleted"));
            store
                .read(|s| s.version(subject, spec, deleted).map(|(_, v)| ApiReply::Raw(v.schema.text().to_string())))
                .await
        }
        (&Method::DELETE, ["subjects", subject, "versions", version]) => {
            let (spec, permanent) = (parse_version(version)?, request.flag("permanent"));
            let deleted = store.write(|s| ops::delete_version(s, subject, spec, permanent)).await?;
            Ok(ApiReply::Json(json!(deleted)))
        }
        (&Method::POST, ["subjects", subject]) => {
            let schema = schema_body(&request)?;
            let deleted = request.flag("deleted");
            store.read(|s| s.lookup(subject, &schema, deleted).map(|(n, v)| version_json(subject, n, v))).await
        }
        (&Method::DELETE, ["subjects", subject]) => {
            let permanent = request.flag("permanent");
            let deleted = store.write(|s| ops::delete_subject(s, subject, permanent)).await?;
            Ok(ApiReply::Json(json!(deleted)))
        }
        (&Method::GET, ["schemas", "types"]) => Ok(ApiReply::Json(json!(["AVRO"]))),
        (&Method::GET, ["schemas", "ids", id]) => {
            let id = schema_id(id)?;
            let text = schema_text(store, id).await?;
            Ok(ApiReply::Json(json!({ "schema": text })))
        }
        (&Method::GET, ["schemas", "ids", id, "schema"]) => {
            Ok(ApiReply::Raw(schema_text(store, schema_id(id)?).await?))
        }
        (&Method::GET, ["schemas", "ids", id, "versions"]) => {
            let (id, deleted) = (schema_id(id)?, request.flag("deleted"));
            let versions = versions_of_id(store, id, deleted).await?;
            let list: Vec<Value> = versions.into_iter().map(|(s, v)| json!({"subject": s, "version": v})).collect();
            Ok(ApiReply::Json(Value::Array(list)))
        }
        (&Method::GET, ["schemas", "ids", id, "subjects"]) => {
            let (id, deleted) = (schema_id(id)?, request.flag("deleted"));
            let mut subjects: Vec<String> =
                versions_of_id(store, id, deleted).await?.into_iter().map(|(s, _)| s).collect();
            subjects.dedup();
            Ok(ApiReply::Json(json!(subjects)))
        }
        (&Method::GET, ["config"]) => {
            Ok(ApiReply::Json(json!({ "compatibilityLevel": store.read(|s| s.global_level()).await.as_str() })))
        }
        (&Method::GET, ["config", subject]) => {
            let fallback = request.flag("defaultToGlobal");
            let level = store
                .read(|s| match s.subject_level(subject) {
                    Some(level) => Ok(level),
                    None if fallback => Ok(s.global_level()),
                    None => Err(ApiErrorReply::subject_level_not_configured(subject)),
                })
                .await?;
            Ok(ApiReply::Json(json!({ "compatibilityLevel": level.as_str() })))
        }
        (&Method::PUT, ["config"]) => set_level(store, None, &request).await,
        (&Method::PUT, ["config", subject]) => set_level(store, Some(subject), &request).await,
        (&Method::DELETE, ["config"]) => delete_level(store, None).await,
        (&Method::DELETE, ["config", subject]) => delete_level(store, Some(subject)).await,
        (&Method::POST, ["compatibility", "subjects", subject, "versions", version]) => {
            let (spec, schema) = (parse_version(version)?, schema_body(&request)?);
            let messages = store
                .read(|s| s.version(subject, spec, false).map(|(_, v)| check(s.level(subject), &schema, &[&v.schema])))
                .await?;
            Ok(compatibility_json(&messages, request.flag("verbose")))
        }
        (&Method::POST, ["compatibility", "subjects", subject, "versions"]) => {
            let schema = schema_body(&request)?;
            let messages = store
                .read(|s| {
                    let live: Vec<&AvroSchema> = s.live_versions(subject).map(|(_, v)| &v.schema).collect();
                    check(s.level(subject), &schema, &live)
                })
                .await;
            Ok(compatibility_json(&messages, request.flag("verbose")))
        }
        _ if known_path(&segments) => Err(ApiErrorReply::method_not_allowed()),
        _ => Err(ApiErrorReply::no_route()),
    }
}

/// Whether some method serves this path (for 405 versus 404).
fn known_path(segments: &[&str]) -> bool {
    matches!(
        segments,
        [] | ["subjects"]
            | ["subjects", _]
            | ["subjects", _, "versions"]
            | ["subjects", _, "versions", _]
            | ["subjects", _, "versions", _, "schema"]
            | ["schemas", "types"]
            | ["schemas", "ids", _]
            | ["schemas", "ids", _, "schema" | "versions" | "subjects"]
            | ["config"]
            | ["config", _]
            | ["compatibility", "subjects", _, "versions"]
            | ["compatibility", "subjects", _, "versions", _]
    )
}

async fn register(store: &Store, subject: &str, request: &ApiRequest) -> Answer {
    let schema = schema_body(request)?;
    let writer = store.writer().to_string();
    let id = store.write(|s| ops::register(s, subject, &schema, &writer)).await?;
    tracing::debug!(subject, id, "schema registered");
    Ok(ApiReply::Json(json!({ "id": id })))
}

async fn set_level(store: &Store, subject: Option<&str>, request: &ApiRequest) -> Answer {
    let body = json_object(request)?;
    let level = body
        .get("compatibility")
        .or_else(|| body.get("compatibilityLevel"))
        .and_then(Value::as_str)
        .and_then(|name| name.parse::<CompatibilityLevel>().ok())
        .ok_or_else(ApiErrorReply::invalid_compatibility_level)?;
    let level = store.write(|_| Ok(ops::set_level(subject, level))).await?;
    Ok(ApiReply::Json(json!({ "compatibility": level.as_str() })))
}

async fn delete_level(store: &Store, subject: Option<&str>) -> Answer {
    let previous = store.write(|s| ops::delete_level(s, subject)).await?;
    Ok(ApiReply::Json(json!({ "compatibilityLevel": previous.as_str() })))
}

async fn schema_text(store: &Store, id: i32) -> Result<String, ApiErrorReply> {
    store
        .read(|s| s.schema_by_id(id).map(|schema| schema.text().to_string()))
        .await
        .ok_or_else(|| ApiErrorReply::schema_id_not_found(&id.to_string()))
}

async fn versions_of_id(store: &Store, id: i32, deleted: bool) -> Result<Vec<(String, i32)>, ApiErrorReply> {
    store
        .read(|s: &State| s.schema_by_id(id).map(|_| s.versions_of_id(id, deleted)))
        .await
        .ok_or_else(|| ApiErrorReply::schema_id_not_found(&id.to_string()))
}

/// A schema id from the path; anything but a positive integer names no schema.
fn schema_id(text: &str) -> Result<i32, ApiErrorReply> {
    text.parse::<i32>().ok().filter(|id| *id > 0).ok_or_else(|| ApiErrorReply::schema_id_not_found(text))
}

fn version_json(subject: &str, number: i32, version: &StoredVersion) -> ApiReply {
    ApiReply::Json(json!({
        "subject": subject,
        "version": number,
        "id": version.id,
        "schema": version.schema.text().as_ref(),
    }))
}

fn compatibility_json(messages: &[String], verbose: bool) -> ApiReply {
    if verbose {
        ApiReply::Json(json!({ "is_compatible": messages.is_empty(), "messages": messages }))
    } else {
        ApiReply::Json(json!({ "is_compatible": messages.is_empty() }))
    }
}

/// The body as a JSON object (400 otherwise, as Confluent's rest-utils answers).
fn json_object(request: &ApiRequest) -> Result<Map<String, Value>, ApiErrorReply> {
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiErrorReply::bad_request("the request body must be a JSON object")),
        Err(e) => Err(ApiErrorReply::bad_request(format!("the request body is not valid JSON: {e}"))),
    }
}

/// The schema of a register, lookup or compatibility request.
///
/// `schemaType` must be absent or AVRO and `references` absent or empty:
/// kfn's registry stores self-contained Avro schemas only.
pub fn schema_body(request: &ApiRequest) -> Result<AvroSchema, ApiErrorReply> {
    let body = json_object(request)?;
    match body.get("schemaType") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind.eq_ignore_ascii_case("AVRO") => {}
        Some(Value::String(kind)) => {
            return Err(ApiErrorReply::invalid_schema(format!(
                "Schema type {kind} is not supported: kfn's schema registry stores Avro schemas only"
            )))
        }
        Some(_) => return Err(ApiErrorReply::bad_request("\"schemaType\" must be a string")),
    }
    match body.get("references") {
        None | Some(Value::Null) => {}
        Some(Value::Array(refs)) if refs.is_empty() => {}
        Some(Value::Array(_)) => {
            return Err(ApiErrorReply::invalid_schema(
                "Schema references are not supported by kfn's schema registry: register a self-contained schema",
            ))
        }
        Some(_) => return Err(ApiErrorReply::bad_request("\"references\" must be an array")),
    }
    let text = match body.get("schema") {
        None | Some(Value::Null) => return Err(ApiErrorReply::invalid_schema("Empty schema")),
        Some(Value::String(text)) if text.trim().is_empty() => {
            return Err(ApiErrorReply::invalid_schema("Empty schema"))
        }
        Some(Value::String(text)) => text,
        Some(_) => return Err(ApiErrorReply::bad_request("\"schema\" must be a string holding the schema's JSON")),
    };
    AvroSchema::parse(text).map_err(|e| ApiErrorReply::invalid_schema(format!("Invalid schema {text}, details: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> ApiRequest {
        ApiRequest { method: Method::POST, segments: vec![], query: vec![], body: body.to_string().into() }
    }

    #[test]
    fn schema_bodies_are_checked_before_any_io() {
        let ok =
            r#"{"schema":"{\"type\":\"record\",\"name\":\"r\",\"fields\":[]}","schemaType":"AVRO","references":[]}"#;
        assert!(schema_body(&request(ok)).is_ok());
        let cases = [
            ("{not json", 400),
            ("[1]", 400),
            (r#"{"schema":{"type":"int"}}"#, 400),
            (r#"{"schema":"\"int\"","references":{}}"#, 400),
            (r#"{}"#, 42201),
            (r#"{"schema":"  "}"#, 42201),
            (r#"{"schema":"{\"type\":\"nope\"}"}"#, 42201),
            (r#"{"schema":"\"int\"","schemaType":"PROTOBUF"}"#, 42201),
            (r#"{"schema":"\"int\"","references":[{"name":"x","subject":"y","version":1}]}"#, 42201),
        ];
        for (body, code) in cases {
            let error = schema_body(&request(body)).expect_err(body);
            assert_eq!(error.code, code, "{body}: {error}");
            assert!(error.status.is_client_error(), "{body}");
        }
    }

    #[test]
    fn a_union_of_a_logical_type_and_its_underlying_type_is_an_invalid_schema() {
        // Found by the registry_body fuzz target: accepted, it was then incompatible with itself.
        let body = r#"{"schema": "{\"type\":[{\"name\": \"window_start\", \"type\": {\"type\": \"long\", \"logicalType\": \"timestamp-millis\"}}, {\"name\": \"window_end\", \"type\": {\"type\": \"long\", \"logi[alType\": \"timestamp-millis\"}}]}", "schemaType": "AVRO", "references": []}"#;
        let error = schema_body(&request(body)).expect_err("a union of two longs");
        assert_eq!(error.code, 42201, "{error}");
        assert!(error.message.contains("duplicate"), "{error}");
        let distinct = r#"{"schema":"[\"null\",{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}]"}"#;
        assert!(schema_body(&request(distinct)).is_ok(), "null and a timestamp are distinct branches");
    }

    #[test]
    fn schema_ids_must_be_positive_integers() {
        assert_eq!(schema_id("12").unwrap(), 12);
        for bad in ["0", "-1", "x", "99999999999"] {
            assert_eq!(schema_id(bad).unwrap_err().code, 40403, "{bad}");
        }
    }
}
