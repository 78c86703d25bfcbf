//! An S3 server (moto, from PyPI) for tests that restart the broker: tansu
//! keeps topics, offsets and transactions in a bucket that outlives it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running moto server with one bucket; stopped on drop.
pub struct S3 {
    child: Child,
    /// The endpoint URL.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
}

impl S3 {
    /// Starts moto on a free port and creates `bucket`.
    pub async fn start(bucket: &str) -> anyhow::Result<Self> {
        let port = kfn::dev::ports::free_port()?;
        let python = crate::python::interpreter();
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let s3 = S3 { child, endpoint: format!("http://127.0.0.1:{port}"), bucket: bucket.to_string() };
        // Wait until it accepts connections (no readiness signal of its own).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "moto did not start on port {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let script = format!(
            "import boto3; boto3.client('s3', endpoint_url='{}', aws_access_key_id='kfn-local', \
             aws_secret_access_key='kfn-local', region_name='us-east-1').create_bucket(Bucket='{bucket}')",
            s3.endpoint
        );
        let status = tokio::process::Command::new(&python).args(["-c", &script]).status().await?;
        anyhow::ensure!(status.success(), "creating bucket {bucket} failed");
        Ok(s3)
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
