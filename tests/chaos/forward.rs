//! A TCP forwarder: what carries the isolated replica's traffic between its
//! network namespace and the brokers on the host's 127.0.0.1.
//!
//! The brokers and the registry listen on (and advertise) 127.0.0.1 of the
//! host, which a process in another namespace cannot reach. So the runner
//! forwards twice: inside the namespace, 127.0.0.1:<port> to the host end of
//! the veth pair (this module run as `chaos __forward`, started with `ip netns
//! exec`), and on the host, the veth address to 127.0.0.1:<port> (this
//! module's [`serve`] as tasks of the runner). Cutting the veth link cuts
//! both. No socat needed.

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::{TcpListener, TcpStream};

/// The first argument that makes the chaos binary a forwarder.
pub const SUBCOMMAND: &str = "__forward";

/// Accepts connections on `listener` forever, each piped to a new connection to `target`.
pub async fn serve(listener: TcpListener, target: SocketAddr) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else { return };
            let mut inbound = inbound;
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            // Either side closing (or the link dying) ends the pair.
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

/// `chaos __forward LISTEN=TARGET...`: binds every LISTEN, prints `ready`, and
/// forwards until killed (the runner kills it; it also dies with the runner:
/// PR_SET_PDEATHSIG, set at spawn).
pub fn main(pairs: &[String]) -> ExitCode {
    let parsed: Result<Vec<(SocketAddr, SocketAddr)>, String> = pairs
        .iter()
        .map(|p| {
            let (listen, target) = p.split_once('=').ok_or_else(|| format!("{p}: expected LISTEN=TARGET"))?;
            Ok((
                listen.parse().map_err(|e| format!("{listen}: {e}"))?,
                target.parse().map_err(|e| format!("{target}: {e}"))?,
            ))
        })
        .collect();
    let pairs = match parsed {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => {
            eprintln!("chaos {SUBCOMMAND}: no LISTEN=TARGET pair given");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("chaos {SUBCOMMAND}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chaos {SUBCOMMAND}: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let mut listeners = Vec::new();
        for (listen, target) in pairs {
            match TcpListener::bind(listen).await {
                Ok(l) => listeners.push((l, target)),
                Err(e) => {
                    eprintln!("chaos {SUBCOMMAND}: binding {listen}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        println!("ready");
        let served = listeners.into_iter().map(|(l, target)| tokio::spawn(serve(l, target)));
        futures::future::join_all(served).await;
        ExitCode::SUCCESS
    })
}
