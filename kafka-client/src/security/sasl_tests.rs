//! Tests of `sasl.rs` and `scram.rs`: full exchanges against an in-test SCRAM
//! server (rsasl's server side), tampered broker messages, and RFC 7677's
//! example exchange for kfn's own server-signature check.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::{digest, hmac, pbkdf2};
use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::scram::properties::ScramStoredPassword;
use rsasl::prelude::{Mechname, SASLConfig, SASLServer, Session, SessionError};
use rsasl::property::AuthId;
use rsasl::validate::NoValidation;

use super::{Mechanism, SaslCredentials, SaslExchange, SecurityError, Step};
use crate::security::scram::{ClientFirst, ServerFirst, ServerProof};

/// What a broker stores for one SCRAM user.
struct StoredUser {
    username: String,
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl StoredUser {
    fn new(mechanism: Mechanism, username: &str, password: &str) -> Self {
        let (kdf, mac, hash, len) = match mechanism {
            Mechanism::ScramSha256 => (pbkdf2::PBKDF2_HMAC_SHA256, hmac::HMAC_SHA256, &digest::SHA256, 32),
            Mechanism::ScramSha512 => (pbkdf2::PBKDF2_HMAC_SHA512, hmac::HMAC_SHA512, &digest::SHA512, 64),
            Mechanism::Plain => unreachable!("PLAIN stores no SCRAM keys"),
        };
        let salt = b"kfn-test-salt".to_vec();
        let iterations = std::num::NonZeroU32::new(4096).unwrap();
        let mut salted = vec![0u8; len];
        pbkdf2::derive(kdf, iterations, &salt, password.as_bytes(), &mut salted);
        let salted = hmac::Key::new(mac, &salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        Self {
            username: username.to_owned(),
            salt,
            iterations: iterations.get(),
            stored_key: digest::digest(hash, client_key.as_ref()).as_ref().to_vec(),
            server_key: hmac::sign(&salted, b"Server Key").as_ref().to_vec(),
        }
    }
}

impl SessionCallback for StoredUser {
    fn callback(&self, _session: &SessionData, context: &Context, request: &mut Request) -> Result<(), SessionError> {
        if context.get_ref::<AuthId>() == Some(self.username.as_str()) {
            request.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(
                self.iterations,
                &self.salt,
                &self.stored_key,
                &self.server_key,
            ))?;
        }
        Ok(())
    }
}

/// A SCRAM server session that knows one user.
fn server(mechanism: Mechanism, username: &str, password: &str) -> Session<NoValidation> {
    let config =
        SASLConfig::builder().with_defaults().with_callback(StoredUser::new(mechanism, username, password)).unwrap();
    SASLServer::<NoValidation>::new(config)
        .start_suggested(Mechname::parse(mechanism.as_str().as_bytes()).unwrap())
        .unwrap()
}

/// Runs a whole exchange; `tamper(round, message)` may alter each server
/// message before the client sees it (round 0: server-first, 1: server-final).
fn authenticate(
    client: &SaslCredentials,
    server_password: &str,
    tamper: impl Fn(usize, Vec<u8>) -> Vec<u8>,
) -> Result<SaslExchange, SecurityError> {
    let mut server = server(client.mechanism, &client.username, server_password);
    let mut exchange = SaslExchange::new(client)?;
    let mut message = exchange.initial()?;
    for round in 0..3 {
        let mut reply = Vec::new();
        server.step(Some(&message), &mut reply).unwrap();
        match exchange.step(&tamper(round, reply))? {
            Step::Send(next) => {
                assert!(!exchange.is_complete(), "complete while still sending");
                message = next;
            }
            Step::Done => return Ok(exchange),
        }
    }
    panic!("exchange did not finish in 3 rounds");
}

fn untouched(_: usize, message: Vec<u8>) -> Vec<u8> {
    message
}

/// Flips one bit of the signature in a "v=..." server-final message.
fn tamper_signature(round: usize, message: Vec<u8>) -> Vec<u8> {
    if round != 1 {
        return message;
    }
    let text = String::from_utf8(message).unwrap();
    let mut signature = BASE64.decode(text.strip_prefix("v=").unwrap()).unwrap();
    signature[0] ^= 0x01;
    format!("v={}", BASE64.encode(signature)).into_bytes()
}

fn scram_mechanisms() -> [Mechanism; 2] {
    [Mechanism::ScramSha256, Mechanism::ScramSha512]
}

#[test]
fn scram_with_right_password_completes() {
    for mechanism in scram_mechanisms() {
        let creds = SaslCredentials::new(mechanism, "kfn-validation", "s3cret");
        let exchange = authenticate(&creds, "s3cret", untouched).unwrap();
        assert!(exchange.is_complete(), "{mechanism}");
    }
}

#[test]
fn scram_with_wrong_password_fails_naming_mechanism_and_user() {
    for mechanism in scram_mechanisms() {
        let creds = SaslCredentials::new(mechanism, "alice", "wrong-password");
        let err = authenticate(&creds, "right-password", untouched).unwrap_err();
        assert!(matches!(err, SecurityError::AuthenticationFailed { .. }), "{err:?}");
        let message = err.to_string();
        assert_eq!(
            message,
            format!(
                "SASL {mechanism} authentication failed for user 'alice': \
                 the broker rejected the proof: invalid-proof"
            )
        );
        assert!(!message.contains("wrong-password") && !format!("{err:?}").contains("wrong-password"));
    }
}

#[test]
fn scram_with_tampered_server_signature_fails() {
    for mechanism in scram_mechanisms() {
        let creds = SaslCredentials::new(mechanism, "bob", "s3cret");
        let err = authenticate(&creds, "s3cret", tamper_signature).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with(&format!("SASL {mechanism} authentication failed for user 'bob'")), "{message}");
        assert!(message.contains("server signature does not match"), "{message}");
    }
}

#[test]
fn scram_server_final_error_fails() {
    let creds = SaslCredentials::new(Mechanism::ScramSha512, "carol", "s3cret");
    let err =
        authenticate(&creds, "s3cret", |round, message| if round == 1 { b"e=other-error".to_vec() } else { message })
            .unwrap_err();
    assert!(err.to_string().ends_with("the broker rejected the proof: other-error"), "{err}");
}

#[test]
fn scram_is_not_complete_until_the_server_final_is_verified() {
    // The tansu 0.6.0 case: the broker lets the client in without sending a
    // server-final message. kfn must not treat that as success.
    let creds = SaslCredentials::new(Mechanism::ScramSha256, "dave", "s3cret");
    let mut server = server(creds.mechanism, "dave", "s3cret");
    let mut exchange = SaslExchange::new(&creds).unwrap();
    let client_first = exchange.initial().unwrap();
    let mut server_first = Vec::new();
    server.step(Some(&client_first), &mut server_first).unwrap();
    let Step::Send(_client_final) = exchange.step(&server_first).unwrap() else {
        panic!("SCRAM must send a client-final message");
    };
    assert!(!exchange.is_complete());
    let err = exchange.step(b"").unwrap_err();
    assert!(err.to_string().contains("sent no server-final message"), "{err}");
    assert!(!exchange.is_complete());
    // A failed exchange stays failed.
    assert!(matches!(exchange.step(b"v=AAAA"), Err(SecurityError::SaslOutOfOrder { .. })));
}

#[test]
fn scram_refuses_weak_iteration_counts_and_foreign_nonces() {
    let creds = SaslCredentials::new(Mechanism::ScramSha256, "erin", "s3cret");
    let err = authenticate(&creds, "s3cret", |round, message| {
        let text = String::from_utf8(message).unwrap();
        if round == 0 {
            text.replace(",i=4096", ",i=1024").into_bytes()
        } else {
            text.into_bytes()
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("1024 PBKDF2 iterations"), "{err}");

    let err = authenticate(&creds, "s3cret", |round, message| {
        if round == 0 {
            b"r=someone-elses-nonce,s=a2Zu,i=4096".to_vec()
        } else {
            message
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("does not extend the client nonce"), "{err}");
}

/// RFC 7677 section 3: user "user", password "pencil".
const RFC7677_CLIENT_FIRST: &[u8] = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC7677_SERVER_FIRST: &[u8] =
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC7677_CLIENT_FINAL: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC7677_SERVER_FINAL: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc7677_proof(password: &str) -> ServerProof {
    let client_first = ClientFirst::parse(RFC7677_CLIENT_FIRST).unwrap();
    assert_eq!(client_first.bare, b"n=user,r=rOprNGfwEbeRWgbNEkqO");
    let server_first = ServerFirst::parse(RFC7677_SERVER_FIRST, &client_first.nonce).unwrap();
    ServerProof::new(
        Mechanism::ScramSha256,
        password.as_bytes(),
        &client_first,
        RFC7677_SERVER_FIRST,
        &server_first,
        RFC7677_CLIENT_FINAL,
    )
    .unwrap()
}

#[test]
fn own_check_accepts_the_rfc7677_server_signature() {
    rfc7677_proof("pencil").verify(RFC7677_SERVER_FINAL).unwrap();
}

#[test]
fn own_check_rejects_wrong_signatures_without_rsasl() {
    // Independent of rsasl: the check kfn relies on if the library ever
    // reported completion before the server-final.
    let proof = rfc7677_proof("pencil");
    let mut tampered = RFC7677_SERVER_FINAL.to_vec();
    tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
    assert!(proof.verify(&tampered).unwrap_err().contains("does not match"));
    assert!(proof.verify(b"").unwrap_err().contains("sent no server-final"));
    assert!(proof.verify(b"x=1").unwrap_err().contains("no server signature"));
    assert!(proof.verify(b"e=invalid-proof").unwrap_err().contains("invalid-proof"));
    // The right signature under another password does not verify.
    assert!(rfc7677_proof("pencil2").verify(RFC7677_SERVER_FINAL).is_err());
}

#[test]
fn plain_sends_user_and_password_and_completes_on_the_broker_answer() {
    let creds = SaslCredentials::new(Mechanism::Plain, "user", "pass");
    let mut exchange = SaslExchange::new(&creds).unwrap();
    assert_eq!(exchange.initial().unwrap(), b"\0user\0pass");
    assert!(!exchange.is_complete());
    assert_eq!(exchange.step(b"").unwrap(), Step::Done);
    assert!(exchange.is_complete());
    assert!(matches!(exchange.step(b""), Err(SecurityError::SaslOutOfOrder { .. })));
    assert!(exchange.is_complete());
}

#[test]
fn exchange_used_out_of_order_is_an_error() {
    let creds = SaslCredentials::new(Mechanism::ScramSha256, "user", "pass");
    let mut exchange = SaslExchange::new(&creds).unwrap();
    let err = exchange.step(b"r=x").unwrap_err();
    assert_eq!(err.to_string(), "SASL SCRAM-SHA-256 exchange used out of order: step() called before initial()");
    exchange.initial().unwrap();
    assert!(matches!(exchange.initial(), Err(SecurityError::SaslOutOfOrder { .. })));
}

#[test]
fn broker_rejection_names_mechanism_and_user() {
    let creds = SaslCredentials::new(Mechanism::ScramSha512, "frank", "hunter2");
    let exchange = SaslExchange::new(&creds).unwrap();
    let err = exchange.rejected("Authentication failed: Invalid username or password");
    assert_eq!(
        err.to_string(),
        "SASL SCRAM-SHA-512 authentication failed for user 'frank': \
         Authentication failed: Invalid username or password"
    );
}

#[test]
fn mechanisms_parse_from_kafka_names() {
    for mechanism in [Mechanism::Plain, Mechanism::ScramSha256, Mechanism::ScramSha512] {
        assert_eq!(mechanism.as_str().parse::<Mechanism>().unwrap(), mechanism);
        assert_eq!(mechanism.to_string(), mechanism.as_str());
    }
    assert_eq!("scram-sha-512".parse::<Mechanism>().unwrap(), Mechanism::ScramSha512);
    let err = "GSSAPI".parse::<Mechanism>().unwrap_err();
    assert_eq!(err.to_string(), "unsupported SASL mechanism 'GSSAPI' (expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)");
}

#[test]
fn debug_output_never_shows_the_password() {
    let creds = SaslCredentials::new(Mechanism::ScramSha256, "grace", "pa55-w0rd");
    let exchange = SaslExchange::new(&creds).unwrap();
    for debug in [format!("{creds:?}"), format!("{exchange:?}")] {
        assert!(debug.contains("grace"), "{debug}");
        assert!(!debug.contains("pa55-w0rd"), "{debug}");
    }
}
