//! The reconciler against a scripted supervisor and a scripted network, on tokio's paused
//! clock: the races between a failed process's last reports, its stop, and the next start,
//! played out in a fixed order, with no socket and no real time.

use std::net::SocketAddr;

use rouse_proxy::connect::Target;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use rouse_core::state::ServerState;
use rouse_supervisor::{BoxFuture, ProcessState, SupervisorError};
use tokio::sync::Semaphore;

use super::*;

/// A supervisor whose every move the test decides: starts succeed at once (reporting STARTING
/// with a new pid when `announce` is set) unless `refuse` says how they fail, stops wait for a
/// permit, and reports are sent by hand.
struct Scripted {
    events: broadcast::Sender<ProcessInfo>,
    calls: Mutex<Vec<&'static str>>,
    stops: Semaphore,
    announce: std::sync::atomic::AtomicBool,
    next_pid: std::sync::atomic::AtomicU32,
    /// Set: every start fails with this error; with an `Unreachable` one, every stop too.
    refuse: Mutex<Option<fn() -> SupervisorError>>,
}

impl Scripted {
    fn new() -> Arc<Scripted> {
        Arc::new(Scripted {
            events: broadcast::channel(64).0,
            calls: Mutex::new(Vec::new()),
            stops: Semaphore::new(0),
            announce: true.into(),
            next_pid: 100.into(),
            refuse: Mutex::new(None),
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
        if let Some(refuse) = *self.refuse.lock().unwrap() {
            return Box::pin(std::future::ready(Err(refuse())));
        }
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
        let refused = self.refuse.lock().unwrap().map(|refuse| refuse());
        if let Some(e @ SupervisorError::Unreachable(_)) = refused {
            return Box::pin(std::future::ready(Err(e)));
        }
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

    fn manage(&self, _servers: &[&rouse_config::ServerConfig]) {}
}

/// One upstream of one server at `addr`, supervised by "scripted", kept at one server.
fn table(addr: SocketAddr) -> Arc<Table> {
    table_with(addr, "min_servers = 1\nstart_timeout = \"10s\"")
}

fn table_with(addr: SocketAddr, extra: &str) -> Arc<Table> {
    Arc::new(Table::new(&config_with(addr, extra, "")))
}

/// One upstream "app" of one server at `addr` under "scripted", with `extra` upstream keys and
/// `server` keys.
fn config_with(addr: SocketAddr, extra: &str, server: &str) -> rouse_config::Config {
    let fail_timeout = if extra.contains("fail_timeout") {
        ""
    } else {
        "fail_timeout = \"200ms\"\n"
    };
    let text = format!(
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\n\
         [supervisors.scripted]\nurl = \"http://127.0.0.1:9/RPC2\"\n\
         [[upstream]]\nname = \"app\"\nsupervisor = \"scripted\"\n\
         {fail_timeout}{extra}\n\
         [[upstream.server]]\naddress = \"{addr}\"\n{server}\n"
    );
    rouse_config::parse("test.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

fn drivers(driver: &Arc<Scripted>) -> Drivers {
    let mut drivers = Drivers::default();
    drivers.supervisord.insert(
        "scripted".to_owned(),
        Arc::clone(driver) as Arc<dyn Supervisor>,
    );
    drivers
}

fn spawn(table: &Arc<Table>, driver: &Arc<Scripted>, net: &Arc<Net>) -> Control {
    Control::spawn_with_probe(
        Arc::clone(table),
        drivers(driver),
        Arc::clone(net) as Arc<dyn Probe>,
    )
}

/// The server's address in these tests; nothing connects to it ([`Net`] answers instead).
const ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

/// The network as the test decides: the server accepts connections while `listening` is set.
struct Net {
    listening: AtomicBool,
}

impl Net {
    fn up() -> Arc<Net> {
        Arc::new(Net {
            listening: true.into(),
        })
    }

    fn down() -> Arc<Net> {
        Arc::new(Net {
            listening: false.into(),
        })
    }

    fn set(&self, listening: bool) {
        self.listening
            .store(listening, std::sync::atomic::Ordering::SeqCst);
    }

    fn answer(&self, addr: SocketAddr) -> Result<(), String> {
        if self.listening.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(())
        } else {
            Err(format!("connect to {addr}: Connection refused"))
        }
    }
}

impl Probe for Net {
    fn until_ready<'a>(
        &'a self,
        target: &'a Target,
        _readiness: &'a rouse_config::Readiness,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), String>> {
        let addr = ip(target);
        Box::pin(async move {
            // As the real probe: a connect every 2 ms until the deadline.
            loop {
                let last = match self.answer(addr) {
                    Ok(()) => return Ok(()),
                    Err(e) => e,
                };
                if Instant::now() + Duration::from_millis(2) >= deadline {
                    return Err(last);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    }

    fn accepts<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(std::future::ready(self.answer(ip(target))))
    }
}

/// The scripted network knows servers by IP address, as every test config writes them.
fn ip(target: &Target) -> SocketAddr {
    match target.server().address() {
        rouse_config::ServerAddress::Ip(addr) => *addr,
        other => panic!("test servers have IP addresses, not {other}"),
    }
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
#[tokio::test(start_paused = true)]
async fn a_late_exit_report_does_not_fail_the_restart_and_the_start_waits_for_the_stop() {
    let net = Net::up();
    let addr = ADDR;
    let table = table(addr);
    let driver = Scripted::new();
    let _control = spawn(&table, &driver, &net);
    let server = Arc::clone(&table.upstreams[0].servers[0]);
    wait_for(&server, ServerState::Ready).await;
    assert_eq!(driver.calls(), ["start"]);

    // The data plane finds it refusing connections before the supervisor reports anything.
    net.set(false);
    server.record_failure(Instant::now(), &table.upstreams[0].backoff);
    // Failed, so stopped through the supervisor: `stopping` until that stop is through, and
    // (min_servers) started again only then.
    wait_for(&server, ServerState::Stopping).await;
    assert_eq!(driver.calls(), ["start", "stop"]);

    // The supervisor's report of the old process's exit comes in while it stops.
    driver.report(ProcessState::Exited, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        driver.calls(),
        ["start", "stop"],
        "no start before the stop ends"
    );
    assert_eq!(server.state(), ServerState::Stopping);

    net.set(true);
    // The new process does not announce itself at once: the old one's exit, reported again
    // late, must not fail the new start.
    driver
        .announce
        .store(false, std::sync::atomic::Ordering::SeqCst);
    driver.stops.add_permits(1);
    wait_until("the revival", || driver.calls().len() == 4).await;
    driver.report(ProcessState::Exited, None);
    wait_for(&server, ServerState::Ready).await;
    assert_eq!(driver.calls(), ["start", "stop", "stopped", "start"]);
    assert_eq!(table.upstreams[0].start_error(), None);
    // The new process is not failed for the old one's refusal either.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.state(), ServerState::Ready);
    assert!(!server.passively_failed(Instant::now()));
    net.set(false);
}

/// A new process can pass its readiness probe before its supervisor's first report of it
/// arrives; a late report about the previous process must not fail it, while the new one's own
/// exit still does.
#[tokio::test(start_paused = true)]
async fn a_late_stop_report_does_not_fail_a_new_ready_server() {
    let net = Net::up();
    let addr = ADDR;
    let table = table(addr);
    let driver = Scripted::new();
    driver.stops.add_permits(100);
    let _control = spawn(&table, &driver, &net);
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
    net.set(false);
}

/// A server not ready within `start_timeout` leaves the requests held for it to answer
/// `start-timeout` by themselves (they have waited as long); a process that dies while
/// starting is reported to them at once.
#[tokio::test(start_paused = true)]
async fn a_start_timeout_is_left_to_the_held_requests_a_death_is_told_at_once() {
    // Nothing listens there: the readiness probe never passes.
    let net = Net::down();
    let addr = ADDR;
    let table = table_with(addr, "start_timeout = \"500ms\"");
    let driver = Scripted::new();
    let _control = spawn(&table, &driver, &net);
    let up = Arc::clone(&table.upstreams[0]);
    let server = Arc::clone(&up.servers[0]);

    let held = up.hold().expect("under queue_limit");
    table.demand.notify_one();
    wait_for(&server, ServerState::Starting).await;
    // The request gives up before the start does (so nothing revives the server after).
    drop(held);
    wait_for(&server, ServerState::Stopping).await;
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

fn unreachable() -> SupervisorError {
    SupervisorError::Unreachable("cannot connect to supervisord \"scripted\"".to_owned())
}

fn spawn_error() -> SupervisorError {
    SupervisorError::Spawn {
        program: "app0".to_owned(),
        reason: "NO_FILE: no such file".to_owned(),
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A supervisor that cannot be reached (restarting, say) is no fault of the server: the start
/// is asked again, with backoff, while requests stay held (no error answered), and goes
/// through as soon as the supervisor answers again.
#[tokio::test(start_paused = true)]
async fn a_start_the_supervisor_could_not_take_is_asked_again_while_requests_wait() {
    let net = Net::up();
    let addr = ADDR;
    let table = table_with(addr, "start_timeout = \"10s\"\nfail_timeout = \"60s\"");
    let driver = Scripted::new();
    *driver.refuse.lock().unwrap() = Some(unreachable);
    let _control = spawn(&table, &driver, &net);
    let up = Arc::clone(&table.upstreams[0]);
    let server = Arc::clone(&up.servers[0]);

    let held = up.hold().expect("under queue_limit");
    table.demand.notify_one();
    wait_until("asked again", || {
        driver.calls().iter().filter(|c| **c == "start").count() >= 3
    })
    .await;
    assert_eq!(server.state(), ServerState::Starting);
    assert_eq!(up.start_error(), None, "held requests keep waiting");

    // supervisord is back: its poll reports the program, and the start goes through.
    *driver.refuse.lock().unwrap() = None;
    driver.report(ProcessState::Stopped, None);
    wait_for(&server, ServerState::Ready).await;
    assert_eq!(up.start_error(), None);
    assert!(!driver.calls().contains(&"stop"), "{:?}", driver.calls());
    drop(held);
    net.set(false);
}

/// Once a failed server has cooled down, the requests that come next wait for a new start: were
/// they still answered the last start's error at once, they would never be held, so never ask
/// for that start, and the upstream would answer that error for ever.
#[tokio::test(start_paused = true)]
async fn after_its_cool_down_a_failed_server_is_started_again_on_demand() {
    let net = Net::up();
    let addr = ADDR;
    let table = table_with(addr, "start_timeout = \"10s\"");
    let driver = Scripted::new();
    driver.stops.add_permits(100);
    *driver.refuse.lock().unwrap() = Some(spawn_error);
    let _control = spawn(&table, &driver, &net);
    let up = Arc::clone(&table.upstreams[0]);
    let server = Arc::clone(&up.servers[0]);

    let held = up.hold().expect("under queue_limit");
    table.demand.notify_one();
    wait_until("the start error", || up.start_error().is_some()).await;
    assert!(up.start_error().unwrap().contains("no such file"));
    drop(held);
    // fail_timeout is 200 ms: the cool-down ends within a second or so.
    wait_for(&server, ServerState::Stopped).await;
    assert_eq!(
        up.start_error(),
        None,
        "the old error is not answered any more"
    );

    *driver.refuse.lock().unwrap() = None;
    let held = up.hold().expect("under queue_limit");
    table.demand.notify_one();
    wait_for(&server, ServerState::Ready).await;
    drop(held);
    net.set(false);
}

/// A start that fails outright (the supervisor retries on its own: BACKOFF) is stopped and, with
/// requests waiting, started again once that stop is through. The failed attempt's own reports
/// (its BACKOFF, then the STOPPED of the failure stop) arrive while it stops: they are about
/// that run, and must neither pass for the revival nor make the server "stopped outside rouse"
/// (which started it a third time, and the requests waited for that one instead of hearing
/// why the start failed).
#[tokio::test(start_paused = true)]
async fn a_failed_starts_own_reports_do_not_pass_for_the_revivals() {
    // Nothing listens there: the readiness probe never passes.
    let net = Net::down();
    let addr = ADDR;
    let table = table_with(addr, "start_timeout = \"10s\"");
    let driver = Scripted::new();
    *driver.refuse.lock().unwrap() = Some(spawn_error);
    let _control = spawn(&table, &driver, &net);
    let up = Arc::clone(&table.upstreams[0]);
    let server = Arc::clone(&up.servers[0]);

    let held = up.hold().expect("under queue_limit");
    table.demand.notify_one();
    // Failed, so stopped: the revival waits for that stop.
    wait_until("the failure stop", || driver.calls().len() >= 2).await;
    wait_for(&server, ServerState::Stopping).await;
    assert_eq!(driver.calls(), ["start", "stop"]);
    driver.report(ProcessState::Backoff, None);
    driver.report(ProcessState::Stopped, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        server.state(),
        ServerState::Stopping,
        "still its failure stop"
    );
    assert_eq!(driver.calls(), ["start", "stop"], "no other start");

    // The stop is through; the revival fails the same way, and the request hears why. (The
    // first failure's error stands until the revival is issued, which clears it before its
    // start reaches the supervisor: two starts and an error is the revival's.)
    driver.stops.add_permits(100);
    let starts = || driver.calls().iter().filter(|c| **c == "start").count();
    wait_until("the revival's error", || {
        starts() == 2 && up.start_error().is_some()
    })
    .await;
    assert!(up.start_error().unwrap().contains("no such file"));
    assert_eq!(
        driver.calls().iter().filter(|c| **c == "start").count(),
        2,
        "{:?}",
        driver.calls()
    );
    drop(held);
}

/// A reload that gives a server's address to another program: the old server drains (its
/// request in flight finishes), is stopped, and only once that stop is through does the new
/// one start: two processes never compete for one port.
#[tokio::test(start_paused = true)]
async fn a_new_server_on_a_retiring_ones_address_starts_once_that_one_is_down() {
    let net = Net::up();
    let addr = ADDR;
    let extra = "min_servers = 1\nstart_timeout = \"10s\"";
    let table = Arc::new(Table::new(&config_with(addr, extra, "")));
    let driver = Scripted::new();
    let control = spawn(&table, &driver, &net);
    let old = Arc::clone(&table.upstreams[0].servers[0]);
    wait_for(&old, ServerState::Ready).await;
    let in_flight = old.begin_request();

    let next = table.reloaded(&config_with(addr, extra, "program = \"next\""));
    let (next, changes) = (Arc::new(next.table), Arc::new(next.changes));
    control
        .reload(Arc::clone(&next), changes, drivers(&driver))
        .await;
    let new = Arc::clone(&next.upstreams[0].servers[0]);
    assert!(!Arc::ptr_eq(&old, &new), "another program: another server");
    wait_for(&old, ServerState::Draining).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        old.state(),
        ServerState::Draining,
        "its request is in flight"
    );
    assert_eq!(new.state(), ServerState::Stopped, "its address is taken");
    assert_eq!(driver.calls(), ["start"]);

    drop(in_flight);
    wait_for(&old, ServerState::Stopping).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        new.state(),
        ServerState::Stopped,
        "the old one is not down yet"
    );
    assert_eq!(driver.calls(), ["start", "stop"]);

    driver.stops.add_permits(1);
    wait_for(&new, ServerState::Ready).await;
    assert_eq!(old.state(), ServerState::Stopped);
    assert_eq!(driver.calls(), ["start", "stop", "stopped", "start"]);
    net.set(false);
}

/// A connect failure the data plane reports for a server that still accepts connections (a
/// SYN lost in a burst) does not fail it: the loop's own connect decides, and the server goes
/// back into rotation. One that refuses is failed and stopped.
#[tokio::test(start_paused = true)]
async fn a_passing_connect_failure_is_checked_before_the_server_is_failed() {
    let net = Net::up();
    let addr = ADDR;
    let table = table(addr);
    let driver = Scripted::new();
    driver.stops.add_permits(10);
    let _control = spawn(&table, &driver, &net);
    let up = Arc::clone(&table.upstreams[0]);
    let server = Arc::clone(&up.servers[0]);
    wait_for(&server, ServerState::Ready).await;

    server.record_failure(Instant::now(), &up.backoff);
    wait_until("back in rotation", || {
        !server.passively_failed(Instant::now())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.state(), ServerState::Ready);
    assert_eq!(driver.calls(), ["start"], "not stopped");

    net.set(false);
    server.record_failure(Instant::now(), &up.backoff);
    wait_until("the stop", || driver.calls().contains(&"stop")).await;
    assert_ne!(server.state(), ServerState::Ready);
}

mod cluster;
