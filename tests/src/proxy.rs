//! A TCP proxy in front of a real broker that can drop a connection at a
//! chosen moment: after the broker answered a Produce request, before the
//! client sees the answer (how the tests prove that a retried batch is not
//! written twice), or in the middle of every Nth request (how they prove that
//! a connection the broker closes mid-request loses nothing), or every
//! request of one kind (a coordinator that cannot be reached for EndTxn). It
//! counts the requests of each kind it forwards. It forwards bytes; it never
//! answers for the broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy.
pub struct FaultProxy {
    /// 127.0.0.1 port clients connect to.
    pub port: u16,
    drop_next_produce_answer: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
    cuts: Arc<Cuts>,
    requests: Requests,
}

/// Requests forwarded, by API key.
type Requests = Arc<Mutex<HashMap<i16, usize>>>;

/// The mid-request cuts: every `every`th request frame (0: none), and every
/// request whose API key is `api` (-1: none), is half sent, then both sides closed.
struct Cuts {
    every: AtomicUsize,
    api: AtomicI32,
    frames: AtomicUsize,
    made: AtomicUsize,
}

impl Default for Cuts {
    fn default() -> Self {
        Cuts {
            every: AtomicUsize::new(0),
            api: AtomicI32::new(-1),
            frames: AtomicUsize::new(0),
            made: AtomicUsize::new(0),
        }
    }
}

impl Cuts {
    /// Whether the request frame passing now, of `api_key`, is to be cut.
    fn this_one(&self, api_key: i16) -> bool {
        let every = self.every.load(Ordering::SeqCst);
        let nth = every > 0 && (self.frames.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(every);
        nth || self.api.load(Ordering::SeqCst) == i32::from(api_key)
    }
}

impl FaultProxy {
    /// Listens on `listener` and forwards every connection to `upstream`.
    pub fn start(listener: std::net::TcpListener, upstream: String) -> Self {
        let port = listener.local_addr().expect("local addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let drop_next = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        let cuts = Arc::new(Cuts::default());
        let requests = Requests::default();
        let (d, c, k, r) = (drop_next.clone(), dropped.clone(), cuts.clone(), requests.clone());
        tokio::spawn(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let (d, c, k, r) = (d.clone(), c.clone(), k.clone(), r.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let _ = pump(client, server, d, c, k, r).await;
                    }
                });
            }
        });
        Self { port, drop_next_produce_answer: drop_next, dropped, cuts, requests }
    }

    /// How many requests with this API key were forwarded (or cut) so far.
    pub fn requests(&self, api_key: i16) -> usize {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).get(&api_key).copied().unwrap_or(0)
    }

    /// From now on, every `n`th request (0: none) reaches the broker only half
    /// written before the proxy closes both sides: to the broker the client
    /// vanished mid-request, to the client the broker closed the connection
    /// with its request unanswered.
    pub fn cut_every(&self, n: usize) {
        self.cuts.every.store(n, Ordering::SeqCst);
    }

    /// From now on, every request with this API key (`None`: none) is cut
    /// as [`FaultProxy::cut_every`] cuts: to the client the broker never answers it.
    pub fn cut_api(&self, api_key: Option<i16>) {
        self.cuts.api.store(api_key.map_or(-1, i32::from), Ordering::SeqCst);
    }

    /// How many requests were cut.
    pub fn cuts(&self) -> usize {
        self.cuts.made.load(Ordering::SeqCst)
    }

    /// Arms the fault: the next Produce answer is swallowed and its connection closed.
    pub fn drop_next_produce_answer(&self) {
        self.drop_next_produce_answer.store(true, Ordering::SeqCst);
    }

    /// How many Produce answers were swallowed.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

async fn read_frame(stream: &mut tokio::net::tcp::OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let len = stream.read_i32().await? as usize;
    let mut frame = vec![0; len];
    stream.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn pump(
    client: TcpStream,
    server: TcpStream,
    drop_next: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
    cuts: Arc<Cuts>,
    requests: Requests,
) -> std::io::Result<()> {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Correlation ids of Produce requests whose answer is to be swallowed.
    let (doomed_tx, mut doomed_rx) = tokio::sync::mpsc::unbounded_channel::<i32>();
    let upstream = async move {
        loop {
            let frame = read_frame(&mut client_read).await?;
            let api_key = i16::from_be_bytes([frame[0], frame[1]]);
            let correlation = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            *requests.lock().unwrap_or_else(|p| p.into_inner()).entry(api_key).or_default() += 1;
            if api_key == 0 && drop_next.swap(false, Ordering::SeqCst) {
                let _ = doomed_tx.send(correlation);
            }
            if cuts.this_one(api_key) {
                server_write.write_i32(frame.len() as i32).await?;
                server_write.write_all(&frame[..frame.len() / 2]).await?;
                cuts.made.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            server_write.write_i32(frame.len() as i32).await?;
            server_write.write_all(&frame).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    };
    let downstream = async move {
        let mut doomed = Vec::new();
        loop {
            let frame = read_frame(&mut server_read).await?;
            while let Ok(id) = doomed_rx.try_recv() {
                doomed.push(id);
            }
            let correlation = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            if doomed.contains(&correlation) {
                // The broker wrote the batch; the client never learns it.
                dropped.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            client_write.write_i32(frame.len() as i32).await?;
            client_write.write_all(&frame).await?;
        }
    };
    tokio::select! {
        r = upstream => r,
        r = downstream => r,
    }
}
