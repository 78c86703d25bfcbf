//! The network namespace one replica runs in, so that the runner can cut it
//! off from the brokers: `ip netns` and a veth pair, the link set down and up
//! (no netem on this machine; a link down drops every packet both ways).
//!
//! ```text
//!   host namespace                              namespace kfnchaos-<pid>
//!   brokers, registry on 127.0.0.1:<p>          replica: brokers = 127.0.0.1:<p>
//!        ^                                            |
//!   forwarder task 10.213.n.1:<p> -> 127.0.0.1:<p>    v
//!        ^                                      chaos __forward 127.0.0.1:<p> -> 10.213.n.1:<p>
//!        +---- veth kc<pid>h (10.213.n.1) ===== veth kc<pid>n (10.213.n.2) ----+
//! ```
//!
//! A blackhole route for the /30 (below the link's own) drops what the host
//! sends to the namespace while the link is down.
//!
//! The replica's HTTP and admin listen on 0.0.0.0 inside: the host reaches
//! them at 10.213.n.2. Everything is removed on drop; a namespace left by a
//! runner that was killed with SIGKILL is removed by the next run.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};
use tokio::task::JoinHandle;

/// Names of the runner's namespaces start with this, then the runner's pid.
const PREFIX: &str = "kfnchaos-";

/// A network namespace with a veth pair to the host and forwarders to the host's 127.0.0.1.
pub struct Isolated {
    name: String,
    host_if: String,
    /// The host end's address (the forwarders' side).
    pub host_ip: Ipv4Addr,
    /// The namespace end's address: where the host reaches the replica's listeners.
    pub inner_ip: Ipv4Addr,
    inner_forwarder: Option<Child>,
    host_forwarders: Vec<JoinHandle<()>>,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Whether this machine lets the runner make namespaces (root and `ip`).
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Removes the namespaces of runners that are gone (killed before their drop ran).
fn remove_abandoned() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name.strip_prefix(PREFIX) else { continue };
        if !Path::new("/proc").join(pid).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Isolated {
    /// Creates the namespace and the veth pair, and forwards `ports` of
    /// 127.0.0.1 inside it to the same ports of the host's 127.0.0.1.
    /// `forwarder` is this binary (run inside as `chaos __forward`).
    pub async fn create(ports: &[u16], forwarder: &Path) -> anyhow::Result<Isolated> {
        remove_abandoned();
        let pid = std::process::id();
        // A /30 of 10.213.0.0/16 per runner: private, and no other of this machine's networks.
        let third = (pid % 200 + 20) as u8;
        let mut isolated = Isolated {
            name: format!("{PREFIX}{pid}"),
            host_if: format!("kc{pid}h"),
            host_ip: Ipv4Addr::new(10, 213, third, 1),
            inner_ip: Ipv4Addr::new(10, 213, third, 2),
            inner_forwarder: None,
            host_forwarders: Vec::new(),
        };
        // From here on, drop removes whatever was made.
        let (ns, host_if, inner_if) = (isolated.name.clone(), isolated.host_if.clone(), format!("kc{pid}n"));
        ip(&["netns", "add", &ns])?;
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &inner_if])?;
        ip(&["link", "set", &inner_if, "netns", &ns])?;
        ip(&["addr", "add", &format!("{}/30", isolated.host_ip), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        // While the link is down its route is gone, and packets to the namespace would take the
        // default route (on this machine, to a proxy that answers HTTP). A blackhole route
        // behind the link's own drops them instead, as a cut cable would.
        let _ = ip(&["route", "del", "blackhole", &isolated.subnet()]);
        ip(&["route", "add", "blackhole", &isolated.subnet(), "metric", "4000"])?;
        ip(&["netns", "exec", &ns, "ip", "addr", "add", &format!("{}/30", isolated.inner_ip), "dev", &inner_if])?;
        ip(&["netns", "exec", &ns, "ip", "link", "set", &inner_if, "up"])?;
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;

        for port in ports {
            let listener = tokio::net::TcpListener::bind((isolated.host_ip, *port))
                .await
                .with_context(|| format!("binding {}:{port} on the host end", isolated.host_ip))?;
            let target = SocketAddr::from(([127, 0, 0, 1], *port));
            isolated.host_forwarders.push(tokio::spawn(crate::forward::serve(listener, target)));
        }
        let pairs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}={}:{p}", isolated.host_ip)).collect();
        let mut inner = isolated.command(forwarder);
        inner.arg(crate::forward::SUBCOMMAND).args(&pairs).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = inner.spawn().context("starting the forwarder in the namespace")?;
        let stdout = child.stdout.take().context("the forwarder's stdout")?;
        isolated.inner_forwarder = Some(child);
        // Its first line says every port is bound (or it exited: an empty read).
        let first = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
        });
        match tokio::time::timeout(std::time::Duration::from_secs(30), first).await {
            Ok(Ok(Ok(line))) if line.trim() == "ready" => Ok(isolated),
            other => bail!("the forwarder in namespace {ns} did not start: {other:?}"),
        }
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`
    /// execs it, so the child's pid is the program's: signals reach it).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        crate::system::die_with_runner(&mut cmd);
        cmd
    }

    /// Cuts the link: nothing passes either way until [`Isolated::heal`].
    pub fn cut(&self) -> anyhow::Result<()> {
        ip(&["link", "set", &self.host_if, "down"])
    }

    /// Brings the link back up.
    pub fn heal(&self) -> anyhow::Result<()> {
        ip(&["link", "set", &self.host_if, "up"])
    }

    /// The /30 of the veth pair.
    fn subnet(&self) -> String {
        let [a, b, c, _] = self.host_ip.octets();
        format!("{a}.{b}.{c}.0/30")
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        if let Some(mut child) = self.inner_forwarder.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for task in self.host_forwarders.drain(..) {
            task.abort();
        }
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["route", "del", "blackhole", &self.subnet()]);
    }
}
