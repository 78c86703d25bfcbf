//! kfn's own check of the SCRAM server signature (RFC 5802, section 3).
//!
//! rsasl produces the client's messages and verifies the broker's final
//! message too, but a broker that accepts a client which never looks at that
//! message (tansu 0.6.0 does) would hide any slip in that path. So kfn keeps
//! the transcript of the exchange and checks `v=` itself with ring's PBKDF2
//! and HMAC, and refuses to call the exchange complete until it has.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::{hmac, pbkdf2};

use super::Mechanism;

/// Fewest PBKDF2 iterations accepted: Kafka's minimum for both SCRAM
/// mechanisms. A lower count from a broker would be a downgrade.
pub(super) const MIN_ITERATIONS: u32 = 4096;
/// Most PBKDF2 iterations accepted: Kafka's maximum. A higher count would let
/// a hostile broker make the client spin.
pub(super) const MAX_ITERATIONS: u32 = 16384;

/// The parts of the client-first message the rest of the exchange needs.
#[derive(Debug, Clone)]
pub(super) struct ClientFirst {
    /// The message without its GS2 header ("n=user,r=nonce").
    pub(super) bare: Vec<u8>,
    /// The client nonce.
    pub(super) nonce: Vec<u8>,
}

impl ClientFirst {
    /// Splits a client-first message ("n,,n=user,r=nonce") produced by rsasl.
    pub(super) fn parse(message: &[u8]) -> Option<Self> {
        // The GS2 header is "<cbind-flag>,<authzid?>," — the bare message
        // starts after its second comma.
        let mut commas = message.iter().enumerate().filter(|(_, b)| **b == b',').map(|(i, _)| i);
        commas.next()?;
        let start = commas.next()? + 1;
        let bare = message.get(start..)?.to_vec();
        let nonce = attribute(&bare, b'r')?.to_vec();
        Some(Self { bare, nonce })
    }
}

/// A parsed server-first message ("r=nonce,s=salt,i=iterations").
#[derive(Debug, Clone)]
pub(super) struct ServerFirst {
    salt: Vec<u8>,
    iterations: NonZeroU32,
}

impl ServerFirst {
    /// Parses and checks a server-first message against the client's nonce.
    pub(super) fn parse(message: &[u8], client_nonce: &[u8]) -> Result<Self, String> {
        if message.is_empty() {
            return Err("the broker sent an empty server-first message".into());
        }
        if let Some(error) = attribute(message, b'e') {
            return Err(format!("the broker rejected the client-first message: {}", String::from_utf8_lossy(error)));
        }
        if message.starts_with(b"m=") {
            return Err("the broker requires an unsupported SCRAM extension (m=)".into());
        }
        let nonce = attribute(message, b'r').ok_or("server-first message has no nonce (r=)")?;
        if nonce.len() <= client_nonce.len() || !nonce.starts_with(client_nonce) {
            return Err("server nonce does not extend the client nonce".into());
        }
        let salt = attribute(message, b's').ok_or("server-first message has no salt (s=)")?;
        let salt = BASE64.decode(salt).map_err(|e| format!("server salt is not base64: {e}"))?;
        let iterations = attribute(message, b'i')
            .and_then(|i| std::str::from_utf8(i).ok())
            .and_then(|i| i.parse::<u32>().ok())
            .ok_or("server-first message has no valid iteration count (i=)")?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "server asks for {iterations} PBKDF2 iterations; \
                 kfn accepts {MIN_ITERATIONS} to {MAX_ITERATIONS}"
            ));
        }
        let iterations = NonZeroU32::new(iterations).ok_or("server iteration count is zero")?;
        Ok(Self { salt, iterations })
    }
}

/// What the broker's final message must prove: the server signature over the
/// exchange's auth message.
pub(super) struct ServerProof {
    server_key: hmac::Key,
    auth_message: Vec<u8>,
}

impl ServerProof {
    /// Derives the expected server signature from the password and the
    /// exact messages exchanged so far.
    pub(super) fn new(
        mechanism: Mechanism,
        password: &[u8],
        client_first: &ClientFirst,
        server_first_raw: &[u8],
        server_first: &ServerFirst,
        client_final_raw: &[u8],
    ) -> Result<Self, String> {
        let (pbkdf2_alg, hmac_alg, len) = match mechanism {
            Mechanism::ScramSha256 => (pbkdf2::PBKDF2_HMAC_SHA256, hmac::HMAC_SHA256, 32),
            Mechanism::ScramSha512 => (pbkdf2::PBKDF2_HMAC_SHA512, hmac::HMAC_SHA512, 64),
            Mechanism::Plain => return Err("PLAIN has no server signature".into()),
        };
        // The proof is the last attribute of the client-final message; the
        // auth message covers everything before it.
        let without_proof = client_final_raw
            .windows(3)
            .rposition(|w| w == b",p=")
            .and_then(|end| client_final_raw.get(..end))
            .ok_or("client-final message has no proof")?;

        let mut salted = vec![0u8; len];
        pbkdf2::derive(pbkdf2_alg, server_first.iterations, &server_first.salt, password, &mut salted);
        let salted = hmac::Key::new(hmac_alg, &salted);
        let server_key = hmac::Key::new(hmac_alg, hmac::sign(&salted, b"Server Key").as_ref());

        let mut auth_message =
            Vec::with_capacity(client_first.bare.len() + server_first_raw.len() + without_proof.len() + 2);
        auth_message.extend_from_slice(&client_first.bare);
        auth_message.push(b',');
        auth_message.extend_from_slice(server_first_raw);
        auth_message.push(b',');
        auth_message.extend_from_slice(without_proof);
        Ok(Self { server_key, auth_message })
    }

    /// Checks the broker's server-final message ("v=signature" or "e=error").
    pub(super) fn verify(&self, server_final: &[u8]) -> Result<(), String> {
        if let Some(error) = attribute(server_final, b'e') {
            return Err(format!("the broker rejected the proof: {}", String::from_utf8_lossy(error)));
        }
        let Some(signature) = attribute(server_final, b'v') else {
            return Err(if server_final.is_empty() {
                "the broker sent no server-final message, so it never proved it knows the \
                 credentials"
                    .into()
            } else {
                "the broker's final message has no server signature (v=)".into()
            });
        };
        let signature = BASE64.decode(signature).map_err(|e| format!("server signature is not base64: {e}"))?;
        hmac::verify(&self.server_key, &self.auth_message, &signature).map_err(|_| {
            "the broker's server signature does not match: it did not prove it knows the \
             credentials"
                .to_string()
        })
    }
}

/// The value of attribute `name` ("name=value") in a comma-separated SCRAM
/// message.
fn attribute(message: &[u8], name: u8) -> Option<&[u8]> {
    message.split(|b| *b == b',').find(|a| a.len() >= 2 && a[0] == name && a[1] == b'=').map(|a| &a[2..])
}
