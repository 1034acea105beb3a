//! `rouse-pgo-train`: the load a profile-guided build of rouse learns from
//! (`scripts/pgo-build.sh`). It runs the given rouse (built with `-Cprofile-generate`) in
//! front of the test backend, twice (one worker thread with the access log off, as the
//! benchmarks run it; two with it on, rouse's default), sends each run what rouse's data plane
//! serves day to day for a moment each, then stops it with SIGTERM so that it writes its
//! profile on the way out.
//!
//! The mix decides what the compiler treats as hot, so it holds every common path, not only
//! the benchmarks' one: small GETs with wrk's one field and with a browser's dozen, large
//! bodies both ways, uploads of unknown length (hyper's path), HTTP/1.0 keep-alive (ab's), a
//! connection per request, h2c, and HTTPS over HTTP/1.1 and HTTP/2. Every answer is checked: a profile learnt from errors
//! would make the error paths hot.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rouse_e2e::{Backend, BackendConfig, free_addr};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Trains an instrumented rouse binary on a realistic mix of requests.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The rouse binary to run (an instrumented build).
    #[arg(long)]
    rouse: PathBuf,
    /// Seconds each kind of load runs, in each of the two runs.
    #[arg(long, default_value_t = 1.5)]
    seconds: f64,
}

/// How long any one exchange, connect or start may take before the training fails.
const WAIT: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match train(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rouse-pgo-train: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn train(cli: &Cli) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let backend = Backend::new(BackendConfig::new("train"))?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let backend_addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let served = {
        let (graceful, immediate) = (stop.clone(), CancellationToken::new());
        tokio::spawn(async move { backend.serve(listener, graceful, immediate).await })
    };
    let tls = certificate(dir.path())?;
    let each = Duration::from_secs_f64(cli.seconds);
    for (threads, access_log) in [(1, false), (2, true)] {
        let plain = free_addr();
        let https = free_addr();
        let config = dir.path().join(format!("rouse-{threads}.toml"));
        std::fs::write(
            &config,
            config_text(plain, https, backend_addr, threads, access_log, dir.path()),
        )?;
        let mut rouse = Rouse::start(&cli.rouse, &config, dir.path(), plain).await?;
        let load = Load {
            plain,
            https,
            tls: tls.clone(),
            each,
        };
        let outcome = load.all().await;
        let stopped = rouse.stop().await;
        outcome?;
        stopped?;
    }
    stop.cancel();
    let _ = tokio::time::timeout(WAIT, served).await;
    Ok(())
}

fn config_text(
    plain: SocketAddr,
    https: SocketAddr,
    backend: SocketAddr,
    threads: usize,
    access_log: bool,
    dir: &Path,
) -> String {
    let log = if access_log {
        format!("\"{}\"", dir.join("access.log").display())
    } else {
        "false".to_owned()
    };
    format!(
        "[proxy]\nlisten = [\"{plain}\"]\nlisten_tls = [\"{https}\"]\nthreads = {threads}\n\n\
         [[proxy.tls]]\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\n\n\
         [log]\naccess_log = {log}\n\n\
         [[upstream]]\nname = \"train\"\nsupervisor = \"none\"\n\n\
         [[upstream.server]]\naddress = \"{backend}\"\n",
        d = dir.display()
    )
}

/// A certificate for 127.0.0.1 written where the config points, and a client that trusts it.
fn certificate(dir: &Path) -> Result<Arc<rustls::ClientConfig>, BoxError> {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])?;
    std::fs::write(dir.join("cert.pem"), cert.cert.pem())?;
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The rouse process being trained.
struct Rouse {
    child: Child,
}

impl Rouse {
    async fn start(
        bin: &Path,
        config: &Path,
        dir: &Path,
        addr: SocketAddr,
    ) -> Result<Rouse, BoxError> {
        let log = std::fs::File::create(dir.join("rouse.log"))?;
        let child = Command::new(bin)
            .args(["run", "-c"])
            .arg(config)
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut rouse = Rouse { child };
        let started = Instant::now();
        let log = || std::fs::read_to_string(dir.join("rouse.log")).unwrap_or_default();
        loop {
            if rouse_e2e::http_get(addr, "/")
                .await
                .is_ok_and(|r| r.status == 200)
            {
                return Ok(rouse);
            }
            // One that exits at once (a config it refuses) is told then, not after WAIT.
            if let Some(status) = rouse.child.try_wait()? {
                return Err(
                    format!("rouse exited with {status} before answering:\n{}", log()).into(),
                );
            }
            if started.elapsed() > WAIT {
                return Err(format!(
                    "rouse does not answer on {addr} within {WAIT:?}:\n{}",
                    log()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then its exit: the profile is written at a clean exit only.
    async fn stop(&mut self) -> Result<(), BoxError> {
        let pid = self
            .child
            .id()
            .ok_or("rouse exited before it was stopped")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .map_err(|_| format!("rouse did not exit within {WAIT:?} of SIGTERM"))??;
        if !status.success() {
            return Err(format!("rouse exited with {status} after SIGTERM").into());
        }
        Ok(())
    }
}

/// The requests one h1 connection sends, in turn.
#[derive(Clone, Copy)]
enum Kind {
    /// wrk's request: the Host field alone.
    Bare,
    /// A browser's: a dozen fields.
    Browser,
    /// 256 KiB down.
    Download,
    /// 16 KiB up with a length, echoed back.
    Upload,
    /// 64 KiB up in chunks of unknown length (hyper's path), echoed back.
    Chunked,
    /// ApacheBench's: HTTP/1.0 asking to keep the connection.
    Http10,
}

struct Load {
    plain: SocketAddr,
    https: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    each: Duration,
}

impl Load {
    async fn all(&self) -> Result<(), BoxError> {
        let plain = Some(self.plain);
        for (name, kind, conns) in [
            ("GET, one field", Kind::Bare, 32),
            ("GET, a browser's fields", Kind::Browser, 8),
            ("256 KiB downloads", Kind::Download, 4),
            ("16 KiB uploads", Kind::Upload, 8),
            ("chunked uploads", Kind::Chunked, 4),
            ("HTTP/1.0 keep-alive GETs", Kind::Http10, 8),
        ] {
            self.report(name, self.h1(plain, kind, conns, false).await?);
        }
        self.report(
            "a connection per request",
            self.h1(plain, Kind::Bare, 8, true).await?,
        );
        self.report("h2c", self.h2(false, 4, 8).await?);
        self.report(
            "HTTPS, HTTP/1.1",
            self.h1(None, Kind::Browser, 8, false).await?,
        );
        self.report("HTTPS, HTTP/2", self.h2(true, 2, 8).await?);
        Ok(())
    }

    fn report(&self, name: &str, n: u64) {
        eprintln!("rouse-pgo-train: {name}: {n} requests in {:?}", self.each);
    }

    /// `conns` HTTP/1.1 connections (to `plain`, or over TLS when `None`), each sending
    /// `kind` until the time is up; `close`: a new connection for every request.
    async fn h1(
        &self,
        plain: Option<SocketAddr>,
        kind: Kind,
        conns: usize,
        close: bool,
    ) -> Result<u64, BoxError> {
        let until = Instant::now() + self.each;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..conns {
            let (tls, https) = (self.tls.clone(), self.https);
            tasks.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    let io = match plain {
                        Some(addr) => Either::Left(connect(addr).await?),
                        None => Either::Right(tls_connect(https, tls.clone(), b"http/1.1").await?),
                    };
                    let (mut send, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
                    tokio::spawn(conn);
                    loop {
                        exchange(&mut send, request(kind, close)).await?;
                        n += 1;
                        if close || Instant::now() >= until {
                            break;
                        }
                    }
                }
                Ok::<u64, BoxError>(n)
            });
        }
        sum(tasks).await
    }

    /// `conns` HTTP/2 connections (h2c, or h2 over TLS by ALPN), `streams` requests at once
    /// on each.
    async fn h2(&self, tls: bool, conns: usize, streams: usize) -> Result<u64, BoxError> {
        let until = Instant::now() + self.each;
        let authority: http::Uri = if tls {
            format!("https://{}/", self.https)
        } else {
            format!("http://{}/", self.plain)
        }
        .parse()?;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..conns {
            let io = if tls {
                Either::Right(tls_connect(self.https, self.tls.clone(), b"h2").await?)
            } else {
                Either::Left(connect(self.plain).await?)
            };
            let handshake =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io));
            let (send, conn) = tokio::time::timeout(WAIT, handshake)
                .await
                .map_err(|_| "an h2 handshake took too long")??;
            tokio::spawn(conn);
            for _ in 0..streams {
                let (mut send, authority) = (send.clone(), authority.clone());
                tasks.spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < until {
                        let mut req = request(Kind::Browser, false);
                        // HTTP/2 names the authority in the target (`:authority`), not in Host.
                        req.headers_mut().remove(http::header::HOST);
                        *req.uri_mut() = authority.clone();
                        *req.version_mut() = Version::HTTP_2;
                        let answer = tokio::time::timeout(WAIT, send.send_request(req))
                            .await
                            .map_err(|_| "an h2 answer took too long")??;
                        check(answer).await?;
                        n += 1;
                    }
                    Ok::<u64, BoxError>(n)
                });
            }
        }
        sum(tasks).await
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

fn request(kind: Kind, close: bool) -> Request<Body> {
    let full = |b: Bytes| Full::new(b).map_err(|never| match never {}).boxed();
    let mut req = Request::builder().header("host", "127.0.0.1");
    if close {
        req = req.header("connection", "close");
    }
    let (method, path, body) = match kind {
        Kind::Bare => (Method::GET, "/", full(Bytes::new())),
        Kind::Browser => {
            for (name, value) in BROWSER {
                req = req.header(*name, *value);
            }
            (Method::GET, "/", full(Bytes::new()))
        }
        Kind::Download => (Method::GET, "/bytes/262144", full(Bytes::new())),
        Kind::Upload => (
            Method::POST,
            "/echo",
            full(Bytes::from(vec![b'u'; 16 << 10])),
        ),
        Kind::Chunked => {
            let chunks =
                (0..16).map(|_| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'c'; 4 << 10]))));
            let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed();
            (Method::POST, "/echo", body)
        }
        Kind::Http10 => {
            req = req
                .version(Version::HTTP_10)
                .header("connection", "keep-alive");
            (Method::GET, "/", full(Bytes::new()))
        }
    };
    req.method(method)
        .uri(path)
        .body(body)
        .expect("a valid request")
}

const BROWSER: &[(&str, &str)] = &[
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("accept-language", "en-US,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("referer", "https://example.com/shop/cart"),
    ("cookie", "session=4f2a9c1e7b; theme=dark; consent=1"),
    ("upgrade-insecure-requests", "1"),
    ("sec-fetch-dest", "document"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-site", "same-origin"),
    ("priority", "u=0, i"),
];

async fn exchange(
    send: &mut hyper::client::conn::http1::SendRequest<Body>,
    req: Request<Body>,
) -> Result<(), BoxError> {
    tokio::time::timeout(WAIT, async {
        send.ready().await?;
        check(send.send_request(req).await?).await
    })
    .await
    .map_err(|_| "an h1 exchange took too long")?
}

async fn check(answer: http::Response<hyper::body::Incoming>) -> Result<(), BoxError> {
    let status = answer.status();
    tokio::time::timeout(WAIT, answer.into_body().collect())
        .await
        .map_err(|_| "a body took too long")??;
    if status != 200 {
        return Err(format!("rouse answered {status}").into());
    }
    Ok(())
}

async fn sum(mut tasks: tokio::task::JoinSet<Result<u64, BoxError>>) -> Result<u64, BoxError> {
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done??;
    }
    Ok(total)
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, BoxError> {
    let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} took too long"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    alpn: &[u8],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, BoxError> {
    let mut config = (*config).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = connect(addr).await?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = tokio::time::timeout(
        WAIT,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| "a TLS handshake took too long")??;
    Ok(tls)
}
