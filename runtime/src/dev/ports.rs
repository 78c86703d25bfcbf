//! Checks that the ports `kfn dev` wants are free, naming the flag that moves each.

use std::net::TcpListener;

/// A port that is already taken.
#[derive(Debug, thiserror::Error)]
#[error("port {port} on 127.0.0.1 for the {what} is already in use; choose another with {flag} <PORT>")]
pub struct PortTaken {
    /// The port.
    pub port: u16,
    /// What wanted it ("broker", "HTTP trigger", ...).
    pub what: &'static str,
    /// The command-line flag that changes it.
    pub flag: &'static str,
}

/// Fails with the first port of `wanted` (port, what, flag) that is taken.
pub fn ensure_free(wanted: &[(u16, &'static str, &'static str)]) -> Result<(), PortTaken> {
    for &(port, what, flag) in wanted {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Err(PortTaken { port, what, flag });
        }
    }
    Ok(())
}

/// A port the OS considers free right now (for tests and parallel stacks).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_names_its_flag() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = ensure_free(&[(port, "broker", "--broker-port")]).unwrap_err();
        assert_eq!(err.port, port);
        assert!(err.to_string().contains("--broker-port"), "{err}");
        drop(listener);
        ensure_free(&[(port, "broker", "--broker-port")]).unwrap();
    }
}
