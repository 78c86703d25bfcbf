//! Transactional producers we did not write, driven line by line: confluent-kafka
//! (`tests/python/txn_producer.py`) and Apache Kafka's Java client
//! (`tests/java`, `dev.kfn.peers.TxnProducer`), which speak one protocol on
//! stdin/stdout, so a test can hold a transaction open while it looks at kfn.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Which client library the peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerClient {
    /// confluent-kafka (librdkafka).
    Librdkafka,
    /// Apache Kafka's Java kafka-clients.
    Java,
}

/// A running transactional producer of one topic.
pub struct TxnPeer {
    client: PeerClient,
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl TxnPeer {
    /// Starts the peer and waits until its InitProducerId is done.
    pub async fn start(
        client: PeerClient,
        bootstrap: &str,
        topic: &str,
        transactional_id: &str,
    ) -> anyhow::Result<Self> {
        let mut cmd = match client {
            PeerClient::Librdkafka => {
                let mut cmd = Command::new(crate::python::interpreter());
                cmd.arg(crate::workspace_root().join("tests/python/txn_producer.py"));
                cmd
            }
            PeerClient::Java => crate::java::command("TxnProducer")?,
        };
        let mut child = cmd
            .args([bootstrap, topic, transactional_id])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the {client:?} transactional producer"))?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut peer = TxnPeer { client, child, stdin, lines: BufReader::new(stdout).lines() };
        peer.expect("\"ready\"").await?;
        Ok(peer)
    }

    /// Sends one command (`begin`, `send P KEY HEX`, `flush`, `commit`, `abort`) and waits until it is done.
    pub async fn command(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let verb = line.split_whitespace().next().unwrap_or_default();
        self.expect(&format!("\"ok\": \"{verb}\"")).await
    }

    /// Sends `value` with `key` to `partition`.
    pub async fn send(&mut self, partition: i32, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
        self.command(&format!("send {partition} {key} {hex}")).await
    }

    async fn expect(&mut self, wanted: &str) -> anyhow::Result<()> {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .map_err(|_| anyhow!("the {:?} peer did not answer within 60 s (waiting for {wanted})", self.client))??;
        match line {
            // Both peers print compact or spaced JSON: compare without spaces.
            Some(l) if l.replace(' ', "").contains(&wanted.replace(' ', "")) => Ok(()),
            Some(l) => bail!("the {:?} peer said {l:?}, expected {wanted}", self.client),
            None => {
                let status = self.child.wait().await?;
                bail!("the {:?} peer exited ({status}) before {wanted}; its stderr is above", self.client)
            }
        }
    }

    /// Closes stdin and waits for the peer to exit.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        drop(self.stdin);
        let status = self.child.wait().await?;
        if !status.success() {
            bail!("the {:?} peer exited with {status}", self.client);
        }
        Ok(())
    }
}
