//! SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 as a step-wise client.
//!
//! [`SaslExchange`] only produces and consumes raw SASL messages; the
//! connection code carries them in SaslAuthenticate requests (after a
//! SaslHandshake naming [`Mechanism::as_str`]). rsasl produces the messages;
//! for SCRAM kfn also checks the broker's server signature itself (see
//! `scram.rs`), and the exchange is not [`Step::Done`] before that check.
//!
//! ```no_run
//! # use kfn_kafka::security::{SaslExchange, SecurityError, Step};
//! # fn authenticate(_: &[u8]) -> Result<Vec<u8>, SecurityError> { unimplemented!() }
//! # fn demo(mut exchange: SaslExchange) -> Result<(), SecurityError> {
//! // `authenticate` stands for one SaslAuthenticate round trip.
//! let mut message = exchange.initial()?;
//! loop {
//!     let reply = authenticate(&message)?;
//!     match exchange.step(&reply)? {
//!         Step::Send(next) => message = next,
//!         Step::Done => break,
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::str::FromStr;

use rsasl::prelude::{Mechname, SASLClient, SASLConfig, Session, State};

use super::scram::{ClientFirst, ServerFirst, ServerProof};
use super::SecurityError;

/// A SASL mechanism kfn can authenticate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `PLAIN`: user and password in the clear (use it over TLS only).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl Mechanism {
    /// The name Kafka uses for the mechanism in SaslHandshake and in broker
    /// configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    fn is_scram(self) -> bool {
        matches!(self, Self::ScramSha256 | Self::ScramSha512)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mechanism {
    type Err = SecurityError;

    /// Parses a Kafka mechanism name, ignoring ASCII case.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [Self::Plain, Self::ScramSha256, Self::ScramSha512]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| SecurityError::UnsupportedMechanism { name: name.to_owned() })
    }
}

/// Who kfn authenticates as. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// The mechanism to use.
    pub mechanism: Mechanism,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl SaslCredentials {
    /// Bundles a mechanism, user and password.
    pub fn new(mechanism: Mechanism, username: impl Into<String>, password: impl Into<String>) -> Self {
        Self { mechanism, username: username.into(), password: password.into() }
    }
}

impl fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What the connection does after handing a broker message to
/// [`SaslExchange::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes in the next SaslAuthenticate request.
    Send(Vec<u8>),
    /// Authentication succeeded; nothing more to send.
    Done,
}

/// Where the exchange stands.
enum Phase {
    /// `initial` not called yet.
    Start,
    /// PLAIN sent; the broker's answer carries only the outcome.
    AwaitPlainOutcome,
    /// SCRAM client-first sent.
    AwaitServerFirst(ClientFirst),
    /// SCRAM client-final sent; the server-final must still be verified.
    AwaitServerFinal {
        proof: ServerProof,
        /// rsasl already reported completion (it should not have), so only
        /// kfn's own check of the server-final remains.
        library_finished: bool,
    },
    Done,
    Failed,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::AwaitPlainOutcome => "awaiting PLAIN outcome",
            Self::AwaitServerFirst(_) => "awaiting server-first",
            Self::AwaitServerFinal { .. } => "awaiting server-final",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

/// One client-side SASL authentication, driven message by message.
pub struct SaslExchange {
    mechanism: Mechanism,
    username: String,
    password: String,
    session: Session,
    phase: Phase,
}

impl fmt::Debug for SaslExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslExchange")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("phase", &self.phase.name())
            .finish_non_exhaustive()
    }
}

impl SaslExchange {
    /// Starts an exchange for `credentials`.
    pub fn new(credentials: &SaslCredentials) -> Result<Self, SecurityError> {
        let mechanism = credentials.mechanism;
        let setup =
            |reason: String| SecurityError::SaslSetup { mechanism, username: credentials.username.clone(), reason };
        let config = SASLConfig::with_credentials(None, credentials.username.clone(), credentials.password.clone())
            .map_err(|e| setup(e.to_string()))?;
        let name = Mechname::parse(mechanism.as_str().as_bytes()).map_err(|e| setup(e.to_string()))?;
        let session = SASLClient::new(config).start_suggested(&[name]).map_err(|e| setup(e.to_string()))?;
        Ok(Self {
            mechanism,
            username: credentials.username.clone(),
            password: credentials.password.clone(),
            session,
            phase: Phase::Start,
        })
    }

    /// The mechanism, to name in SaslHandshake.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// True once the broker's last message was accepted ([`Step::Done`]).
    pub fn is_complete(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// The client's first message (PLAIN: the whole credentials; SCRAM:
    /// client-first). Call once, before any [`step`](Self::step).
    pub fn initial(&mut self) -> Result<Vec<u8>, SecurityError> {
        if !matches!(self.phase, Phase::Start) {
            return Err(self.out_of_order("initial() called twice"));
        }
        self.phase = Phase::Failed;
        let mut message = Vec::new();
        let state = self
            .session
            .step(None, &mut message)
            .map_err(|e| self.rejected(format!("cannot build the first message: {e}")))?;
        self.phase = match (self.mechanism.is_scram(), state) {
            (false, State::Finished(_)) => Phase::AwaitPlainOutcome,
            (true, State::Running) => Phase::AwaitServerFirst(
                ClientFirst::parse(&message)
                    .ok_or_else(|| self.rejected("rsasl built a malformed client-first message"))?,
            ),
            (_, state) => {
                return Err(self.rejected(format!("unexpected SASL library state {state:?} after the first message")))
            }
        };
        Ok(message)
    }

    /// Consumes the broker's message (the `auth_bytes` of a SaslAuthenticate
    /// response) and says what to send next.
    ///
    /// For SCRAM the exchange ends only after the server-final message
    /// proved the broker knows the credentials; an `e=` error, a wrong or
    /// missing signature give [`SecurityError::AuthenticationFailed`].
    pub fn step(&mut self, server: &[u8]) -> Result<Step, SecurityError> {
        // Any error below leaves the exchange failed: no retry on a session
        // whose state is unknown.
        match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::AwaitPlainOutcome => {
                // A PLAIN broker answers with no data; success or failure
                // travels in the response's error code.
                self.phase = Phase::Done;
                Ok(Step::Done)
            }
            Phase::AwaitServerFirst(client_first) => self.on_server_first(&client_first, server),
            Phase::AwaitServerFinal { proof, library_finished } => {
                self.on_server_final(&proof, library_finished, server)
            }
            // Misuse by the caller does not change where the exchange stands.
            Phase::Start => {
                self.phase = Phase::Start;
                Err(self.out_of_order("step() called before initial()"))
            }
            Phase::Done => {
                self.phase = Phase::Done;
                Err(self.out_of_order("step() called after the exchange completed"))
            }
            Phase::Failed => Err(self.out_of_order("step() called after the exchange failed")),
        }
    }

    /// The error to return when the broker refused authentication, e.g. a
    /// SaslAuthenticate response with an error code; `reason` is the
    /// broker's message.
    pub fn rejected(&self, reason: impl Into<String>) -> SecurityError {
        SecurityError::AuthenticationFailed {
            mechanism: self.mechanism,
            username: self.username.clone(),
            reason: reason.into(),
        }
    }

    fn on_server_first(&mut self, client_first: &ClientFirst, server_first_raw: &[u8]) -> Result<Step, SecurityError> {
        // Checked before rsasl runs PBKDF2, so a hostile iteration count is
        // refused before any work.
        let server_first = ServerFirst::parse(server_first_raw, &client_first.nonce).map_err(|r| self.rejected(r))?;
        let mut client_final = Vec::new();
        let state =
            self.session.step(Some(server_first_raw), &mut client_final).map_err(|e| self.rejected(e.to_string()))?;
        let library_finished = match state {
            State::Running => false,
            // Completion before the server-final was seen: still send the
            // client-final and still demand the server-final below.
            State::Finished(_) => true,
        };
        let proof = ServerProof::new(
            self.mechanism,
            self.password.as_bytes(),
            client_first,
            server_first_raw,
            &server_first,
            &client_final,
        )
        .map_err(|r| self.rejected(r))?;
        self.phase = Phase::AwaitServerFinal { proof, library_finished };
        Ok(Step::Send(client_final))
    }

    fn on_server_final(
        &mut self,
        proof: &ServerProof,
        library_finished: bool,
        server_final: &[u8],
    ) -> Result<Step, SecurityError> {
        proof.verify(server_final).map_err(|r| self.rejected(r))?;
        if !library_finished {
            let mut trailing = Vec::new();
            let state = self
                .session
                .step(Some(server_final), &mut trailing)
                .map_err(|e| self.rejected(format!("server-final rejected: {e}")))?;
            if state.is_running() || !trailing.is_empty() {
                return Err(self.rejected("the SASL library wants to continue after server-final"));
            }
        }
        self.phase = Phase::Done;
        tracing::debug!(mechanism = %self.mechanism, username = %self.username, "SASL authenticated");
        Ok(Step::Done)
    }

    fn out_of_order(&self, reason: &'static str) -> SecurityError {
        SecurityError::SaslOutOfOrder { mechanism: self.mechanism, reason }
    }
}

#[cfg(test)]
#[path = "sasl_tests.rs"]
mod tests;
