//! The function graph: every consumer of a topic can read what is written to it.
//!
//! What is written to a topic is always framed with the topic's schema file:
//! the runtime's output encoder writes every emitted event with it, and other
//! producers register it too. So the check is, for each topic-triggered
//! function: can a reader with the handler's event schema read data written
//! with its input topic's schema? The configuration already checked that both
//! name the same record; this checks the fields (a field the reader needs and
//! the writer lacks, with no default, or a type that does not promote).
//!
//! The SDK knows a handler's event type only by its Avro full name
//! ([`kfn_sdk::TopicHandler::input`]), not by its serde shape, so the reader's
//! schema is the file of the project's `schemas/` folder that declares that
//! name ([`ReaderSchemas`]). In the order system (functions/) that is exactly
//! the file its `events::schema_files()` pairs with the type, and that
//! crate's drift tests keep each type and its file equal.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::resolution::can_read;
use super::{shown, SchemaCheckError};
use crate::config::{Config, ConfigError};
use crate::registry::schema::AvroSchema;

/// The reader schema of each event type: the `.avsc` files of one folder, by
/// the Avro full name of the record each declares.
#[derive(Debug, Default)]
pub struct ReaderSchemas {
    by_event: BTreeMap<String, Vec<ReaderFile>>,
    skipped: Vec<(PathBuf, String)>,
}

#[derive(Debug)]
struct ReaderFile {
    path: PathBuf,
    schema: AvroSchema,
}

impl ReaderSchemas {
    /// Reads every `*.avsc` file directly in `dir` (not its subfolders, so
    /// example versions such as `schemas/evolution/` are not readers). A
    /// folder that does not exist gives an empty set.
    pub fn from_dir(dir: &Path) -> Result<Self, SchemaCheckError> {
        let mut readers = ReaderSchemas::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(readers),
            Err(source) => return Err(SchemaCheckError::Read { path: dir.to_path_buf(), source }),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| SchemaCheckError::Read { path: dir.to_path_buf(), source })?;
            let path = entry.path();
            if path.is_file() && path.extension().is_some_and(|e| e == "avsc") {
                paths.push(path);
            }
        }
        // read_dir's order is the file system's; sorted, the messages are the same on every machine.
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| SchemaCheckError::Read { path: path.clone(), source })?;
            readers.add(path, &text);
        }
        Ok(readers)
    }

    /// Adds the schema in `text` (from `path`) as the reader of the record it declares.
    /// A text that is not an Avro record schema is remembered as skipped.
    pub fn add(&mut self, path: PathBuf, text: &str) {
        match AvroSchema::parse(text) {
            Ok(schema) => match record_name(&schema) {
                Some(name) => self.by_event.entry(name).or_default().push(ReaderFile { path, schema }),
                None => self.skipped.push((path, "not a record schema".to_string())),
            },
            Err(reason) => self.skipped.push((path, reason)),
        }
    }

    /// The files declaring the record with this full name.
    pub fn files(&self, event: &str) -> Vec<&Path> {
        self.by_event.get(event).map(|files| files.iter().map(|f| f.path.as_path()).collect()).unwrap_or_default()
    }

    /// Every event with the files declaring it.
    pub fn events(&self) -> impl Iterator<Item = (&str, Vec<&Path>)> + '_ {
        self.by_event.iter().map(|(name, files)| (name.as_str(), files.iter().map(|f| f.path.as_path()).collect()))
    }

    /// Files that are not an Avro record schema, and why.
    pub fn skipped(&self) -> &[(PathBuf, String)] {
        &self.skipped
    }
}

/// One consumer read of the graph that was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphRead {
    /// The consuming function.
    pub function: String,
    /// Its handler.
    pub handler: String,
    /// The topic it reads.
    pub topic: String,
    /// The Avro full name of the handler's event type.
    pub event: String,
    /// The topic's schema file: what writers write with.
    pub writer: PathBuf,
    /// The handler's reader schema file, when one declares the event.
    pub reader: Option<PathBuf>,
}

/// What the graph check found.
#[derive(Debug, Default)]
pub struct GraphReport {
    /// Every read that was checked (including those with a problem).
    pub reads: Vec<GraphRead>,
    /// Reads that cannot work, each naming the config file, the function's
    /// `input` field, both schema files, the writers and why.
    pub problems: Vec<ConfigError>,
    /// Reads checked by name only (no reader schema file), and skipped files.
    pub notes: Vec<String>,
}

impl GraphReport {
    /// Whether no read has a problem.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks that each topic-triggered function of `config` can read each of its
/// input topics' schemas with the reader schema of the event type its handler
/// takes from that topic.
pub fn check_graph(config: &Config, handlers: &kfn_sdk::Registry, readers: &ReaderSchemas) -> GraphReport {
    let base = config.base_dir();
    let source = config.file.display().to_string();
    let mut report = GraphReport::default();
    for (path, reason) in readers.skipped() {
        report.notes.push(format!("{} is not a reader schema: {reason}", shown(path, base)));
    }
    // Parsed once per topic, as several functions may read one topic.
    let mut writers: HashMap<&str, Result<AvroSchema, String>> = HashMap::new();
    for (name, function) in &config.functions {
        for (i, topic) in function.inputs().iter().enumerate() {
            let topic = topic.as_str();
            // The config was validated: the topic has a schema naming its event, and the handler takes it.
            let Some(spec) = config.topics.get(topic) else { continue };
            let (Some(writer_path), Some(topic_event)) = (spec.schema.clone(), spec.event.as_deref()) else { continue };
            // A topic handler for the topic's event, or an aggregate's fold (which decodes its input too).
            let fold = handlers.aggregate_handler(&function.handler).map(|f| f.input);
            let Some(event) = handlers.topic_handler_for(&function.handler, topic_event).map(|h| h.input).or(fold)
            else {
                continue;
            };
            let field = function.input_field(i);
            let files = readers.by_event.get(event).map(Vec::as_slice).unwrap_or_default();
            report.reads.push(GraphRead {
                function: name.clone(),
                handler: function.handler.clone(),
                topic: topic.to_string(),
                event: event.to_string(),
                writer: writer_path.clone(),
                reader: files.first().filter(|_| files.len() == 1).map(|f| f.path.clone()),
            });
            let problem = |message: String| ConfigError { source: source.clone(), field: field.clone(), message };
            let writer = writers.entry(topic).or_insert_with(|| {
                std::fs::read_to_string(&writer_path).map_err(|e| e.to_string()).and_then(|t| AvroSchema::parse(&t))
            });
            let writer = match writer {
                Ok(w) => w,
                Err(reason) => {
                    let file = shown(&writer_path, base);
                    report.problems.push(problem(format!("cannot read topic {topic:?}'s schema {file}: {reason}")));
                    continue;
                }
            };
            let reader = match files {
                [] => {
                    report.notes.push(format!(
                        "function {name}: no schema file in {} declares {event}, the event of handler {}; \
                         its read of {topic:?} was checked by record name only",
                        shown(&base.join("schemas"), base),
                        function.handler
                    ));
                    continue;
                }
                [one] => one,
                several => {
                    let names: Vec<String> = several.iter().map(|f| shown(&f.path, base)).collect();
                    report.problems.push(problem(format!(
                        "expected one reader schema of {event} (the event of handler {}), found {}: {}; \
                         keep other versions outside the schemas folder, e.g. in schemas/evolution/",
                        function.handler,
                        several.len(),
                        names.join(", ")
                    )));
                    continue;
                }
            };
            if reader.schema.identity() == writer.identity() {
                continue;
            }
            if let Err(reason) = can_read(writer, &reader.schema) {
                let producers = writers_of(config, topic);
                report.problems.push(problem(format!(
                    "handler {} reads {event} with {}, which cannot read records of topic {topic:?} written with {} \
                     ({producers}): {reason}",
                    function.handler,
                    shown(&reader.path, base),
                    shown(&writer_path, base),
                )));
            }
        }
    }
    report
}

/// Who writes to `topic`, for messages: "by function order_api, output created".
fn writers_of(config: &Config, topic: &str) -> String {
    let found: Vec<String> = config
        .functions
        .iter()
        .flat_map(|(name, f)| {
            f.outputs
                .iter()
                .filter(|(_, t)| t.as_str() == topic)
                .map(move |(output, _)| format!("function {name}, output {output}"))
        })
        .collect();
    if found.is_empty() {
        "written outside the function graph".to_string()
    } else {
        format!("written by {}", found.join("; "))
    }
}

/// The full name of the record `schema` declares.
fn record_name(schema: &AvroSchema) -> Option<String> {
    match schema.parsed() {
        apache_avro::Schema::Record(record) => Some(record.name.fullname(None)),
        _ => None,
    }
}
