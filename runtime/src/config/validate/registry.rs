//! Validation of the registry settings of `[runtime]`: the URL's scheme,
//! `schema_registry_auth` (user, and the variable holding the password) and
//! `schema_registry_tls` (the CA file, for `https://` only).

use super::super::raw::{RawRegistryAuth, RawRegistryTls};
use super::super::RegistryAccess;
use super::Validator;
use crate::avro::BasicAuth;

impl Validator<'_> {
    /// The access settings of the registry at `url`; errors are collected, and
    /// what is wrong is left out of the result.
    pub(super) fn registry_access(
        &mut self,
        url: Option<&str>,
        auth: Option<RawRegistryAuth>,
        tls: Option<RawRegistryTls>,
    ) -> RegistryAccess {
        let https = match url {
            Some(url) if url.starts_with("https://") => true,
            Some(url) if url.starts_with("http://") => false,
            Some(url) => {
                self.c.push("runtime.schema_registry", format!("expected an http:// or https:// URL, found {url:?}"));
                false
            }
            None => {
                if auth.is_some() || tls.is_some() {
                    self.c.push(
                        "runtime.schema_registry",
                        "expected a URL: schema_registry_auth or schema_registry_tls is set, but not the registry",
                    );
                }
                false
            }
        };
        let auth = auth.and_then(|raw| self.registry_auth(raw));
        let ca_file = tls.and_then(|raw| raw.ca).and_then(|name| {
            if url.is_some() && !https {
                self.c
                    .push("runtime.schema_registry_tls.ca", "set, but runtime.schema_registry is not an https:// URL");
                return None;
            }
            let path = self.base.join(name);
            if !path.is_file() {
                self.c.push(
                    "runtime.schema_registry_tls.ca",
                    format!("expected a PEM file of CA certificates, {} does not exist", path.display()),
                );
            }
            Some(path)
        });
        RegistryAccess { auth, ca_file }
    }

    fn registry_auth(&mut self, raw: RawRegistryAuth) -> Option<BasicAuth> {
        // Basic auth splits "user:password" at the first ':'.
        if raw.username.is_empty() || raw.username.contains(':') {
            self.c.push(
                "runtime.schema_registry_auth.username",
                format!("expected a user name without ':', found {:?}", raw.username),
            );
        }
        match std::env::var(&raw.password_env) {
            Ok(password) => Some(BasicAuth { username: raw.username, password }),
            Err(_) => {
                self.c.push(
                    "runtime.schema_registry_auth.password_env",
                    format!("expected environment variable {} to hold the password; it is not set", raw.password_env),
                );
                None
            }
        }
    }
}
