//! Which user each function authenticates as.
//!
//! With `[security] per_function = true`, function `validation` connects as
//! the SASL user `kfn-validation` (principal `User:kfn-validation`), with the
//! mechanism and TLS of `[security]` and the password in the environment
//! variable `KFN_PASSWORD_VALIDATION` (the function's name upper-cased, `-`
//! as `_`). A process needs the passwords of the functions it runs only:
//! `kfn run --only validation` reads `KFN_PASSWORD_VALIDATION` and nothing
//! else. `[security].sasl` stays the identity of what is not a function (the
//! tools, the lag exporter). `kfn acls plan` grants each such user exactly its
//! function's ACLs.
//!
//! ```
//! use kfn::config::{function_password_env, function_user};
//! assert_eq!(function_user("order_api"), "kfn-order_api");
//! assert_eq!(function_password_env("order_api"), "KFN_PASSWORD_ORDER_API");
//! ```

use std::collections::BTreeMap;

use super::{SaslSettings, SecuritySettings};

/// Why a function has no identity to connect with.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    /// The password of the function's user is not in the environment.
    #[error(
        "function {function} connects as user {user} ([security] per_function = true), \
         but the environment variable {env} that holds its password is not set"
    )]
    MissingPassword {
        /// The function.
        function: String,
        /// Its user.
        user: String,
        /// The variable.
        env: String,
    },
    /// `per_function` without a SASL table to take the mechanism from.
    #[error("function {function}: [security] per_function = true needs [security].sasl (its mechanism)")]
    NoSasl {
        /// The function.
        function: String,
    },
}

/// The SASL user of `function` under `per_function`: `kfn-<function>`.
pub fn function_user(function: &str) -> String {
    format!("kfn-{function}")
}

/// The environment variable holding the password of `function`'s user: `KFN_PASSWORD_<FUNCTION>`.
pub fn function_password_env(function: &str) -> String {
    let name: String =
        function.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("KFN_PASSWORD_{name}")
}

/// Passwords by function name; `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FunctionPasswords(pub BTreeMap<String, String>);

impl std::fmt::Debug for FunctionPasswords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl SecuritySettings {
    /// The settings `function`'s connections use: these settings, or with
    /// `per_function` the same protocol, mechanism and TLS as the function's own user.
    pub fn for_function(&self, function: &str) -> Result<SecuritySettings, PrincipalError> {
        if !self.per_function {
            return Ok(self.clone());
        }
        let shared = self.sasl.as_ref().ok_or_else(|| PrincipalError::NoSasl { function: function.to_string() })?;
        let user = function_user(function);
        let env = function_password_env(function);
        let password = match self.function_passwords.0.get(function) {
            Some(p) => p.clone(),
            None => std::env::var(&env).map_err(|_| PrincipalError::MissingPassword {
                function: function.to_string(),
                user: user.clone(),
                env: env.clone(),
            })?,
        };
        Ok(SecuritySettings {
            sasl: Some(SaslSettings {
                mechanism: shared.mechanism.clone(),
                username: user,
                password_env: env,
                password,
            }),
            per_function: false,
            function_passwords: FunctionPasswords::default(),
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecurityProtocol;

    fn settings() -> SecuritySettings {
        SecuritySettings {
            protocol: SecurityProtocol::SaslSsl,
            sasl: Some(SaslSettings {
                mechanism: "SCRAM-SHA-512".into(),
                username: "kfn-admin".into(),
                password_env: "KFN_SASL_PASSWORD".into(),
                password: "admin-secret".into(),
            }),
            per_function: true,
            ..SecuritySettings::default()
        }
    }

    #[test]
    fn a_function_gets_its_own_user_and_password() {
        let mut s = settings();
        s.function_passwords.0.insert("validation".into(), "v-secret".into());
        let own = s.for_function("validation").expect("own settings");
        let sasl = own.sasl.expect("sasl");
        assert_eq!((sasl.username.as_str(), sasl.password.as_str()), ("kfn-validation", "v-secret"));
        assert_eq!(sasl.mechanism, "SCRAM-SHA-512");
        assert!(!own.per_function);
        assert!(!format!("{:?}", s.function_passwords).contains("v-secret"));
    }

    #[test]
    fn a_missing_password_names_function_user_and_variable() {
        let err = settings().for_function("no_such_function_here").expect_err("no password");
        let text = err.to_string();
        for part in ["no_such_function_here", "kfn-no_such_function_here", "KFN_PASSWORD_NO_SUCH_FUNCTION_HERE"] {
            assert!(text.contains(part), "{text}");
        }
    }

    #[test]
    fn shared_settings_are_used_as_they_are() {
        let shared = SecuritySettings { per_function: false, ..settings() };
        let own = shared.for_function("validation").expect("shared");
        assert_eq!(own.sasl.expect("sasl").username, "kfn-admin");
    }
}
