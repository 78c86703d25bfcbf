//! Each topic's schema file against what the Schema Registry holds, without registering.
//!
//! For every topic with a schema, the registry is asked
//! `POST /compatibility/subjects/<topic>-value/versions/latest`: could this
//! schema be registered as the subject's next version under the subject's
//! compatibility level? The registry decides, with its own rules and level,
//! so the answer is the one a deployment would get. A subject with nothing
//! registered yet is fine: the first version is always accepted.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use backon::ExponentialBuilder;

use super::{shown, SchemaCheckError};
use crate::avro::{value_subject, ApiErrorKind, CompatibilityCheck, RegistryClient, RegistryError};
use crate::config::Config;

/// What the registry said about one topic's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The schema can be registered as the next version (or already is the latest).
    Compatible,
    /// The subject has no version yet (40401, or 40402 when every version was deleted).
    NewSubject,
    /// The registry would refuse it.
    Incompatible {
        /// The subject's compatibility level, when the registry told it.
        level: Option<String>,
        /// The registry's reasons (it may give none).
        messages: Vec<String>,
    },
    /// The schema file could not be read.
    Unreadable(String),
    /// The registry could not be asked (unreachable, auth, an unexpected answer).
    Failed(String),
}

impl Verdict {
    /// Whether this verdict lets `kfn check` pass.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Compatible | Verdict::NewSubject)
    }

    /// The verdict for the registry's answer to a compatibility check.
    pub fn from_answer(answer: Result<CompatibilityCheck, RegistryError>) -> Verdict {
        match answer {
            Ok(check) if check.is_compatible => Verdict::Compatible,
            Ok(check) => Verdict::Incompatible { level: None, messages: check.messages },
            Err(e) => match e.kind() {
                Some(ApiErrorKind::SubjectNotFound | ApiErrorKind::VersionNotFound) => Verdict::NewSubject,
                // Confluent answers 200 with is_compatible false; a registry answering 409 means the same.
                Some(ApiErrorKind::Incompatible) => Verdict::Incompatible {
                    level: None,
                    messages: e.api().map(|a| vec![a.message.clone()]).unwrap_or_default(),
                },
                _ => Verdict::Failed(crate::error_text::one_line(&e)),
            },
        }
    }
}

/// One topic's schema and the registry's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicVerdict {
    /// The topic.
    pub topic: String,
    /// Its value subject, `<topic>-value`.
    pub subject: String,
    /// The schema file, relative to the config's folder when under it.
    pub file: String,
    /// The config file, for messages.
    pub config: PathBuf,
    /// What the registry said.
    pub verdict: Verdict,
}

impl fmt::Display for TopicVerdict {
    /// One line: `topic "t" (subject t-value, schemas/x.avsc): ...`, with the
    /// config file and the field first when the verdict is an error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = format!("topic {:?} (subject {}, {})", self.topic, self.subject, self.file);
        match &self.verdict {
            Verdict::Compatible => write!(f, "{what}: compatible with the latest registered version"),
            Verdict::NewSubject => write!(f, "{what}: new subject, nothing registered yet"),
            Verdict::Incompatible { level, messages } => {
                let field = format!("{}: topics.\"{}\".schema", self.config.display(), self.topic);
                let level = level.as_deref().map(|l| format!(" under {l}")).unwrap_or_default();
                write!(f, "{field}: {what} is not compatible with the latest version of the subject{level}")?;
                if messages.is_empty() {
                    write!(f, " (the registry gave no reason)")
                } else {
                    write!(f, ": {}", messages.join("; "))
                }
            }
            Verdict::Unreadable(reason) => {
                write!(f, "{}: topics.\"{}\".schema: {what}: {reason}", self.config.display(), self.topic)
            }
            Verdict::Failed(reason) => write!(f, "{what}: cannot ask the schema registry: {reason}"),
        }
    }
}

/// The verdicts of every topic with a schema, in file order.
#[derive(Debug, Clone)]
pub struct RegistryReport {
    /// The registry asked.
    pub url: String,
    /// One verdict per topic asked about.
    pub topics: Vec<TopicVerdict>,
    /// Topics not asked about because the registry could not be reached for an earlier one.
    pub not_asked: Vec<String>,
}

impl RegistryReport {
    /// Whether every topic's schema is compatible or new.
    pub fn is_ok(&self) -> bool {
        self.not_asked.is_empty() && self.topics.iter().all(|t| t.verdict.is_ok())
    }

    /// The verdicts that fail the check.
    pub fn errors(&self) -> impl Iterator<Item = &TopicVerdict> + '_ {
        self.topics.iter().filter(|t| !t.verdict.is_ok())
    }
}

/// A client for checks: a registry that is down fails the check after one
/// quick retry instead of the runtime's twenty seconds, as someone is waiting.
pub fn check_client(url: &str) -> Result<RegistryClient, SchemaCheckError> {
    check_client_with(url, crate::avro::RegistryAccess::default())
}

/// [`check_client`] with credentials and a CA (`runtime.schema_registry_auth` and `_tls`).
pub fn check_client_with(url: &str, access: crate::avro::RegistryAccess) -> Result<RegistryClient, SchemaCheckError> {
    let retry = ExponentialBuilder::new().with_min_delay(Duration::from_millis(200)).with_max_times(1);
    Ok(RegistryClient::with_access(url, access)?.with_retry(retry).with_timeout(Duration::from_secs(5)))
}

/// Asks the registry of `client` about the schema of every topic of `config`.
///
/// When the registry cannot be reached (after the client's retries), the
/// remaining topics are not asked: each would wait and fail the same way.
pub async fn check_registry(config: &Config, client: &RegistryClient) -> RegistryReport {
    let base = config.base_dir();
    let mut report = RegistryReport { url: client.url().to_string(), topics: Vec::new(), not_asked: Vec::new() };
    let mut unreachable = false;
    for topic in config.topics.values() {
        let Some(path) = &topic.schema else { continue };
        if unreachable {
            report.not_asked.push(topic.name.clone());
            continue;
        }
        let subject = value_subject(&topic.name);
        let verdict = match std::fs::read_to_string(path) {
            Err(e) => Verdict::Unreadable(e.to_string()),
            Ok(text) => {
                let answer = client.check_compatibility(&subject, &text).await;
                unreachable = answer.as_ref().is_err_and(RegistryError::is_transient);
                match Verdict::from_answer(answer) {
                    Verdict::Incompatible { level: None, messages } => {
                        let level = client.subject_config(&subject).await.ok().map(|l| l.to_string());
                        Verdict::Incompatible { level, messages }
                    }
                    other => other,
                }
            }
        };
        tracing::debug!(topic = %topic.name, subject, ok = verdict.is_ok(), "schema checked against the registry");
        report.topics.push(TopicVerdict {
            topic: topic.name.clone(),
            subject,
            file: shown(path, base),
            config: config.file.clone(),
            verdict,
        });
    }
    report
}
