//! functions.toml loading: any text as the file's contents, validated
//! against the order system's handlers as `orders run` does (schema paths
//! resolve from the repository root, so the shipped schemas are read).
//!
//! Properties: no panic, and a file that does not load says why: at least
//! one error, each naming the file and with a message, and every error of a
//! valid TOML document naming a field.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kfn::config::Config;
use libfuzzer_sys::fuzz_target;

fn registry() -> &'static kfn_sdk::Registry {
    static REGISTRY: OnceLock<kfn_sdk::Registry> = OnceLock::new();
    REGISTRY.get_or_init(kfn_functions::registry)
}

fn file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions.toml"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(errors) = Config::load_str(file(), text, registry()) else {
        return;
    };
    let errors = errors.errors();
    assert!(!errors.is_empty(), "a refused file says why");
    let is_toml = toml::from_str::<toml::Table>(text).is_ok();
    for error in errors {
        assert!(!error.message.is_empty(), "{error}");
        assert!(!error.source.is_empty(), "{error}");
        if is_toml {
            assert!(!error.field.is_empty(), "an error of a TOML document names no field: {error}");
        }
    }
});
