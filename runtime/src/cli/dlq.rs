//! `kfn dlq`: list, inspect and replay the dead letters of a function.
//!
//! The reading and replaying live in [`crate::invoker::replay`]; this module
//! only prints. `show` decodes the value the way the runtime does: Confluent
//! framing, the writer's schema from the registry, then the Avro datum as JSON.

use crate::kafka_settings::ClusterFromConfig;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::avro::{framing, RegistryClient, SchemaCache};
use crate::config::Config;
use crate::invoker::dead_letter::headers;
use crate::invoker::replay::{self, DeadLetter, DlqOffset, ReplayReport, Selection};
use crate::kafka::Cluster;

/// Which function's dead letters, and where it is declared.
#[derive(Debug, Args)]
pub struct DlqFunction {
    /// The function whose dead-letter topic to read.
    #[arg(long, short)]
    function: String,
    /// The configuration file.
    #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
    config: PathBuf,
}

/// The `kfn dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter: where it is, where it came from, why it failed.
    List {
        #[command(flatten)]
        target: DlqFunction,
    },
    /// One dead letter in full: headers, key, and the value decoded.
    Show {
        #[command(flatten)]
        target: DlqFunction,
        /// The dead letter, as `list` prints it: <partition>/<offset>.
        at: DlqOffset,
    },
    /// Write dead letters back to their input topic, each at most once.
    ///
    /// Replayed records keep their key, value and headers (minus kfn.*) and
    /// gain kfn.replayed.from. Dead letters replayed before are skipped: the
    /// compacted topic <dead-letter topic>.replayed records each replay, in
    /// the same transaction as the replayed record (see docs/dlq.md).
    Replay {
        #[command(flatten)]
        target: DlqFunction,
        /// Replay every dead letter not replayed yet.
        #[arg(long, conflicts_with = "at")]
        all: bool,
        /// The dead letters to replay: <partition>/<offset> ...
        #[arg(required_unless_present = "all")]
        at: Vec<DlqOffset>,
    },
}

/// Runs a `kfn dlq` subcommand.
pub async fn run(command: DlqCommand, registry: &kfn_sdk::Registry) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List { target } => {
            let (config, cluster) = connect(&target, registry)?;
            let topic = replay::dead_letter_topic(&config, &target.function)?;
            let letters = replay::read_dead_letters(&cluster, topic).await?;
            let done = replay::replayed(&cluster, topic).await?;
            println!("{topic}: {} dead letters, {} replayed", letters.len(), done.len());
            for letter in &letters {
                println!("{}", list_line(letter, done.contains_key(&letter.at)));
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { target, at } => {
            let (config, cluster) = connect(&target, registry)?;
            let topic = replay::dead_letter_topic(&config, &target.function)?;
            let letters = replay::read_dead_letters(&cluster, topic).await?;
            let letter = letters.iter().find(|l| l.at == at).with_context(|| format!("no record {at} in {topic}"))?;
            let done = replay::replayed(&cluster, topic).await?;
            print!("{}", show(topic, letter, done.get(&at).map(String::as_str), &config).await);
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay { target, all, at } => {
            let (config, cluster) = connect(&target, registry)?;
            let selection = if all { Selection::All } else { Selection::Only(at) };
            let report = replay::replay(&cluster, &config, &target.function, &selection).await?;
            print!("{}", report_text(&report));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn connect(target: &DlqFunction, registry: &kfn_sdk::Registry) -> anyhow::Result<(Config, Cluster)> {
    let config = super::load(&target.config, registry)?;
    let cluster = Cluster::from_config(&config).context("connecting to the brokers")?;
    Ok((config, cluster))
}

/// `0/12  orders.created/3/1045  retries_exhausted  attempts=5  [replayed]  message`
fn list_line(letter: &DeadLetter, replayed: bool) -> String {
    let origin = match letter.origin() {
        Ok(o) => format!("{}/{}/{}", o.topic, o.partition, o.offset),
        Err(_) => "?".to_string(),
    };
    let attempts = letter.attempts().map_or("?".to_string(), |a| a.to_string());
    format!(
        "{:<10} {:<30} {:<18} attempts={:<3} {}{}",
        letter.at.to_string(),
        origin,
        letter.kind().unwrap_or("?"),
        attempts,
        if replayed { "[replayed] " } else { "" },
        one_line(letter.message().unwrap_or("")),
    )
}

fn one_line(text: &str) -> String {
    const MAX: usize = 160;
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match flat.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &flat[..i]),
        None => flat,
    }
}

async fn show(topic: &str, letter: &DeadLetter, replayed_to: Option<&str>, config: &Config) -> String {
    let mut out = format!("dead letter {topic}/{}\n", letter.at);
    let field = |out: &mut String, name: &str, value: &str| out.push_str(&format!("  {name:<12}{value}\n"));
    field(&mut out, "timestamp", &letter.timestamp_ms.to_string());
    match letter.origin() {
        Ok(o) => field(&mut out, "original", &format!("{}/{}/{}", o.topic, o.partition, o.offset)),
        Err(e) => field(&mut out, "original", &format!("unknown ({e})")),
    }
    field(&mut out, "function", letter.header(headers::FUNCTION).unwrap_or("?"));
    let attempts = letter.attempts().map_or("?".to_string(), |a| a.to_string());
    field(&mut out, "error", &format!("{} after {attempts} attempt(s)", letter.kind().unwrap_or("?")));
    field(&mut out, "message", letter.message().unwrap_or(""));
    field(&mut out, "replayed", &replayed_to.map_or("no".to_string(), |to| format!("yes, to {to}")));
    out.push_str(&format!("key: {}\n", bytes_text(letter.key.as_deref())));
    out.push_str("headers:\n");
    for h in &letter.headers {
        out.push_str(&format!("  {} = {}\n", h.name, bytes_text(h.value.as_deref())));
    }
    out.push_str(&value_text(letter.value.as_deref(), config).await);
    out
}

/// Text as a quoted string when it is UTF-8 without control characters, else hex.
fn bytes_text(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "null".to_string(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) if !s.chars().any(|c| c.is_control()) => format!("{s:?}"),
            _ => format!("0x{}", hex(b)),
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value decoded to JSON, or its bytes in hex with the reason it did not decode.
async fn value_text(value: Option<&[u8]>, config: &Config) -> String {
    let Some(value) = value else { return "value: null\n".to_string() };
    let decoded = match schema_cache(config) {
        Ok(cache) => decode_value(value, &cache).await,
        Err(reason) => framing::split(value).map_err(|e| e.to_string()).and(Err(reason)),
    };
    match decoded {
        Ok((id, json)) => {
            let pretty = serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string());
            format!("value (schema id {id}):\n{pretty}\n")
        }
        Err(reason) => format!("value ({} bytes, not decoded: {reason}):\n0x{}\n", value.len(), hex(value)),
    }
}

fn schema_cache(config: &Config) -> Result<SchemaCache, String> {
    let url = config.runtime.schema_registry.as_deref().ok_or("runtime.schema_registry is not set")?;
    let access = config.runtime.schema_registry_access.clone();
    Ok(SchemaCache::new(RegistryClient::with_access(url, access).map_err(|e| e.to_string())?))
}

async fn decode_value(value: &[u8], schemas: &SchemaCache) -> Result<(u32, serde_json::Value), String> {
    let writer = schemas.resolve(value).await.map_err(|e| e.to_string())?;
    // serde_avro_fast reads decimals as strings, so amounts print as written.
    let json = writer.decode::<serde_json::Value>().map_err(|e| e.to_string())?;
    Ok((writer.schema_id, json))
}

fn report_text(report: &ReplayReport) -> String {
    let mut out = String::new();
    for r in &report.replayed {
        out.push_str(&format!("replayed  {}/{} -> {}/{}\n", report.dlq_topic, r.from, r.to.topic, r.to.partition));
    }
    for s in &report.skipped {
        out.push_str(&format!("skipped   {}/{}: {}\n", report.dlq_topic, s.from, s.reason));
    }
    out.push_str(&format!("{} replayed, {} skipped\n", report.replayed.len(), report.skipped.len()));
    out
}

#[cfg(test)]
mod tests {
    use crate::kafka::Header;
    use bytes::Bytes;

    use super::*;

    fn letter() -> DeadLetter {
        let h = |n: &str, v: &str| Header { name: n.to_string(), value: Some(Bytes::from(v.to_string())) };
        DeadLetter {
            at: DlqOffset { partition: 1, offset: 12 },
            timestamp_ms: 5,
            key: Some(Bytes::from_static(b"order-1")),
            value: Some(Bytes::from_static(b"{}")),
            headers: vec![
                h(headers::TOPIC, "orders"),
                h(headers::PARTITION, "3"),
                h(headers::OFFSET, "1045"),
                h(headers::ATTEMPTS, "5"),
                h(headers::KIND, "retries_exhausted"),
                h(headers::MESSAGE, "payment service\ndown"),
            ],
        }
    }

    #[test]
    fn a_list_line_names_place_origin_cause_and_attempts() {
        let line = list_line(&letter(), true);
        for part in ["1/12", "orders/3/1045", "retries_exhausted", "attempts=5", "[replayed]", "payment service down"] {
            assert!(line.contains(part), "{part:?} missing from {line:?}");
        }
        assert!(!list_line(&letter(), false).contains("[replayed]"));
    }

    #[test]
    fn binary_bytes_print_as_hex() {
        assert_eq!(bytes_text(Some(b"order-1")), "\"order-1\"");
        assert_eq!(bytes_text(Some(&[0, 1, 0xff])), "0x0001ff");
        assert_eq!(bytes_text(None), "null");
    }

    #[tokio::test]
    async fn an_unframed_value_is_shown_in_hex_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions.toml");
        std::fs::write(&path, "[runtime]\nbrokers = [\"127.0.0.1:1\"]\n").unwrap();
        let config = Config::load_file_only(&path, &kfn_sdk::Registry::default()).unwrap();
        let text = value_text(Some(b"{\"a\":1}"), &config).await;
        assert!(text.contains("0x7b2261223a317d"), "{text}");
        assert!(text.contains("magic byte"), "{text}");
    }

    #[tokio::test]
    async fn a_framed_value_decodes_to_json_with_decimals_as_written() {
        let schemas = SchemaCache::new(RegistryClient::new("http://127.0.0.1:9", None).unwrap());
        let schema = r#"{"type": "record", "name": "Payment", "fields": [
            {"name": "id", "type": "string"},
            {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
            {"name": "note", "type": ["null", "string"], "default": null}]}"#;
        schemas.insert(3, std::sync::Arc::new(schema.parse().unwrap()));
        let mut value = Vec::new();
        framing::write_header(3, &mut value);
        // "a", 12.34 (unscaled 1234 = 0x04d2), null
        value.extend_from_slice(&[2, b'a', 4, 0x04, 0xd2, 0]);
        let (id, json) = decode_value(&value, &schemas).await.unwrap();
        assert_eq!(id, 3);
        assert_eq!(json, serde_json::json!({"id": "a", "amount": "12.34", "note": null}));
    }

    #[test]
    fn a_report_lists_replayed_and_skipped() {
        let report = ReplayReport {
            dlq_topic: "o.dlq".into(),
            replayed: vec![replay::Replayed {
                from: DlqOffset { partition: 0, offset: 1 },
                to: crate::kafka::group::protocol::TopicPartition::new("o", 2),
            }],
            skipped: vec![replay::Skipped {
                from: DlqOffset { partition: 0, offset: 2 },
                reason: "already replayed".into(),
            }],
        };
        let text = report_text(&report);
        assert!(text.contains("replayed  o.dlq/0/1 -> o/2"), "{text}");
        assert!(text.contains("skipped   o.dlq/0/2: already replayed"), "{text}");
        assert!(text.ends_with("1 replayed, 1 skipped\n"), "{text}");
    }
}
