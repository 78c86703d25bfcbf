//! Checks that the ports `kfn dev` wants are free, naming the flag that moves each.

use std::net::TcpListener;

/// A port `kfn dev` cannot use.
#[derive(Debug, thiserror::Error)]
pub enum PortTaken {
    /// Something else listens on it.
    #[error("port {port} on 127.0.0.1 for the {what} is already in use; choose another with {flag} <PORT>")]
    InUse {
        /// The port.
        port: u16,
        /// What wanted it ("broker", "HTTP trigger", ...).
        what: &'static str,
        /// The command-line flag that changes it.
        flag: &'static str,
    },
    /// Two of the wanted servers were given the same port.
    #[error(
        "port {port} is asked for both the {first} ({first_flag}) and the {second} ({second_flag}); give each its own"
    )]
    Twice {
        /// The port.
        port: u16,
        /// The first server that wanted it.
        first: &'static str,
        /// The flag that set it.
        first_flag: &'static str,
        /// The second server that wanted it.
        second: &'static str,
        /// The flag that set it.
        second_flag: &'static str,
    },
}

/// Fails with the first port of `wanted` (port, what, flag) that is asked twice or taken.
pub fn ensure_free(wanted: &[(u16, &'static str, &'static str)]) -> Result<(), PortTaken> {
    for (i, &(port, second, second_flag)) in wanted.iter().enumerate() {
        if let Some(&(_, first, first_flag)) = wanted[..i].iter().find(|w| w.0 == port) {
            return Err(PortTaken::Twice { port, first, first_flag, second, second_flag });
        }
    }
    for &(port, what, flag) in wanted {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Err(PortTaken::InUse { port, what, flag });
        }
    }
    Ok(())
}

/// A port the OS considers free right now (for tests and parallel stacks).
///
/// Chosen below the ephemeral range where the OS can: a port from that range
/// (what binding port 0 gives) may be taken by any outgoing connection before
/// the caller binds it, which made busy test runs fail with "address in use".
pub fn free_port() -> std::io::Result<u16> {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU32, Ordering};
    static DRAWN: AtomicU32 = AtomicU32::new(0);
    if let Some(below) = ephemeral_low().filter(|low| *low > 11_000) {
        let (first, count) = (10_000u64, u64::from(below) - 10_000);
        for _ in 0..200 {
            let draw =
                std::hash::RandomState::new().hash_one((std::process::id(), DRAWN.fetch_add(1, Ordering::Relaxed)));
            let port = (first + draw % count) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// The first port of the OS's ephemeral range (Linux), if it says.
fn ephemeral_low() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_names_its_flag() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = ensure_free(&[(port, "broker", "--broker-port")]).unwrap_err();
        assert!(matches!(err, PortTaken::InUse { port: p, .. } if p == port), "{err}");
        assert!(err.to_string().contains("--broker-port"), "{err}");
        drop(listener);
        ensure_free(&[(port, "broker", "--broker-port")]).unwrap();
    }

    #[test]
    fn a_port_asked_twice_names_both_flags() {
        let wanted = [(8080, "HTTP trigger", "--http-port"), (8080, "metrics and health endpoints", "--admin-port")];
        let err = ensure_free(&wanted).unwrap_err();
        assert!(matches!(err, PortTaken::Twice { port: 8080, .. }), "{err}");
        assert!(err.to_string().contains("--http-port") && err.to_string().contains("--admin-port"), "{err}");
    }

    #[test]
    fn free_ports_are_bindable_and_outside_the_ephemeral_range() {
        let low = ephemeral_low();
        for _ in 0..50 {
            let port = free_port().unwrap();
            TcpListener::bind(("127.0.0.1", port)).unwrap();
            if let Some(low) = low.filter(|l| *l > 11_000) {
                assert!(port < low, "{port} is in the ephemeral range from {low}");
            }
        }
    }
}
