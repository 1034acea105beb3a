//! The reconciler against a scripted supervisor: the races between a failed process's last
//! reports, its stop, and the next start, played out in a fixed order.

use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

use rouse_supervisor::{BoxFuture, SupervisorError};
use tokio::sync::Semaphore;

use super::*;

/// A supervisor whose every move the test decides: starts succeed at once (reporting STARTING
/// with a new pid when `announce` is set), stops wait for a permit, and reports are sent by hand.
struct Scripted {
    events: broadcast::Sender<ProcessInfo>,
    calls: Mutex<Vec<&'static str>>,
    stops: Semaphore,
    announce: std::sync::atomic::AtomicBool,
    next_pid: std::sync::atomic::AtomicU32,
}

impl Scripted {
    fn new() -> Arc<Scripted> {
        Arc::new(Scripted {
            events: broadcast::channel(64).0,
            calls: Mutex::new(Vec::new()),
            stops: Semaphore::new(0),
            announce: true.into(),
            next_pid: 100.into(),
        })
    }

    fn report(&self, state: ProcessState, pid: Option<u32>) {
        let _ = self.events.send(ProcessInfo {
            program: "app0".to_owned(),
            state,
            pid,
            description: format!("scripted {state}"),
        });
    }

    fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }
}

impl Supervisor for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn start<'a>(&'a self, _program: &'a str) -> BoxFuture<'a, Result<(), SupervisorError>> {
        self.calls.lock().unwrap().push("start");
        if self.announce.load(std::sync::atomic::Ordering::SeqCst) {
            let pid = self
                .next_pid
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.report(ProcessState::Starting, Some(pid));
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn stop<'a>(&'a self, _program: &'a str) -> BoxFuture<'a, Result<(), SupervisorError>> {
        self.calls.lock().unwrap().push("stop");
        Box::pin(async move {
            self.stops.acquire().await.expect("open").forget();
            self.calls.lock().unwrap().push("stopped");
            Ok(())
        })
    }

    fn observe(&self) -> BoxFuture<'_, Result<Vec<ProcessInfo>, SupervisorError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    fn subscribe(&self) -> broadcast::Receiver<ProcessInfo> {
        self.events.subscribe()
    }
}

/// One upstream of one server at `addr`, supervised by "scripted", kept at one server.
fn table(addr: SocketAddr) -> Arc<Table> {
    table_with(addr, "min_servers = 1\nstart_timeout = \"10s\"")
}

fn table_with(addr: SocketAddr, extra: &str) -> Arc<Table> {
    let text = format!(
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\n\
         [supervisors.scripted]\nurl = \"http://127.0.0.1:9/RPC2\"\n\
         [[upstream]]\nname = \"app\"\nsupervisor = \"scripted\"\n\
         fail_timeout = \"200ms\"\n{extra}\n\
         [[upstream.server]]\naddress = \"{addr}\"\n"
    );
    let config = rouse_config::parse("test.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    Arc::new(Table::new(&config))
}

fn spawn(table: &Arc<Table>, driver: &Arc<Scripted>) -> Control {
    let mut drivers = Drivers::default();
    drivers.supervisord.insert(
        "scripted".to_owned(),
        Arc::clone(driver) as Arc<dyn Supervisor>,
    );
    Control::spawn(Arc::clone(table), drivers)
}

async fn wait_for(server: &Server, state: ServerState) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.state() != state {
        assert!(
            Instant::now() < deadline,
            "still {} waiting for {state}",
            server.state()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The previous process's exit is reported only once its replacement has been asked for:
/// it must neither fail the new start nor let the start overtake the stop still under way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_exit_report_does_not_fail_the_restart_and_the_start_waits_for_the_stop() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let table = table(addr);
    let driver = Scripted::new();
    let _control = spawn(&table, &driver);
    let server = Arc::clone(&table.upstreams[0].servers[0]);
    wait_for(&server, ServerState::Ready).await;
    assert_eq!(driver.calls(), ["start"]);

    // The data plane finds it refusing connections before the supervisor reports anything.
    drop(listener);
    server.record_failure(Instant::now(), &table.upstreams[0].backoff);
    // Failed, stopped through the supervisor, and (min_servers) started again at once; the
    // stop is held up, so the start must wait for it.
    wait_for(&server, ServerState::Starting).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        driver.calls(),
        ["start", "stop"],
        "no start before the stop ends"
    );

    // Now the supervisor's report of the old process's exit comes in.
    driver.report(ProcessState::Exited, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        server.state(),
        ServerState::Starting,
        "a report about the previous process does not fail the new start"
    );
    assert_eq!(table.upstreams[0].start_error(), None);

    let listener = TcpListener::bind(addr).unwrap();
    driver.stops.add_permits(1);
    wait_for(&server, ServerState::Ready).await;
    assert_eq!(driver.calls(), ["start", "stop", "stopped", "start"]);
    // The new process is not failed for the old one's refusal either.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.state(), ServerState::Ready);
    assert!(!server.passively_failed(Instant::now()));
    drop(listener);
}

/// A new process can pass its readiness probe before its supervisor's first report of it
/// arrives; a late report about the previous process must not fail it, while the new one's own
/// exit still does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_stop_report_does_not_fail_a_new_ready_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let table = table(addr);
    let driver = Scripted::new();
    driver.stops.add_permits(100);
    let _control = spawn(&table, &driver);
    let server = Arc::clone(&table.upstreams[0].servers[0]);
    wait_for(&server, ServerState::Ready).await;

    // The process dies; the restart's STARTING report will be late.
    driver
        .announce
        .store(false, std::sync::atomic::Ordering::SeqCst);
    driver.report(ProcessState::Exited, None);
    // Failed, stopped, and revived at once (min_servers): too quick to watch, so watch the
    // supervisor's calls instead.
    let deadline = Instant::now() + Duration::from_secs(10);
    while driver.calls().len() < 4 {
        assert!(Instant::now() < deadline, "{:?}", driver.calls());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_for(&server, ServerState::Ready).await;
    assert_eq!(driver.calls(), ["start", "stop", "stopped", "start"]);

    // The stop of the dead process is reported now, after the new one passed its probe.
    driver.report(ProcessState::Stopped, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.state(), ServerState::Ready, "stale report ignored");
    assert_eq!(
        driver.calls().len(),
        4,
        "and nothing stopped: {:?}",
        driver.calls()
    );

    // Once the new process has been reported, its own exit counts.
    driver.report(ProcessState::Starting, Some(500));
    driver.report(ProcessState::Running, Some(500));
    driver.report(ProcessState::Exited, None);
    // Failed, so stopped (and then revived): the stop is what shows it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while driver.calls().len() < 5 {
        assert!(Instant::now() < deadline, "{:?}", driver.calls());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(driver.calls()[4], "stop");
    drop(listener);
}

/// A server not ready within `start_timeout` leaves the requests held for it to answer
/// `start-timeout` by themselves (they have waited as long); a process that dies while
/// starting is reported to them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_timeout_is_left_to_the_held_requests_a_death_is_told_at_once() {
    // Nothing listens there: the readiness probe never passes.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let table = table_with(addr, "start_timeout = \"500ms\"");
    let driver = Scripted::new();
    let _control = spawn(&table, &driver);
    let up = Arc::clone(&table.upstreams[0]);
    let server = Arc::clone(&up.servers[0]);

    let held = up.hold().expect("under queue_limit");
    table.demand.notify_one();
    wait_for(&server, ServerState::Starting).await;
    // The request gives up before the start does (so nothing revives the server after).
    drop(held);
    wait_for(&server, ServerState::Failed).await;
    assert_eq!(driver.calls(), ["start", "stop"]);
    assert_eq!(
        up.start_error(),
        None,
        "a timed-out start is not a start error: held requests time out by themselves"
    );

    // A new request revives it (once the stop is through), and that attempt dies while
    // starting.
    let held = up.hold().expect("under queue_limit");
    table.demand.notify_one();
    driver.stops.add_permits(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while driver.calls().len() < 4 {
        assert!(Instant::now() < deadline, "{:?}", driver.calls());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(driver.calls(), ["start", "stop", "stopped", "start"]);
    assert_eq!(server.state(), ServerState::Starting);
    driver.report(ProcessState::Fatal, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.start_error().is_none() {
        assert!(Instant::now() < deadline, "{}", server.state());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        up.start_error().unwrap().contains("FATAL"),
        "{:?}",
        up.start_error()
    );
    drop(held);
}
