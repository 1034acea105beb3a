//! `[cluster]` in the admin API: `/status`'s `cluster` object and `/metrics`' `rouse_cluster_*`
//! gauges, read off the etcd shell's snapshot (set here by hand, as the shell would), over a
//! served admin API and a real HTTP client; and neither of them without a cluster.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rouse_admin::AdminState;
use rouse_cluster::{ClusterHandle, EtcdState, Shell, Snapshot};
use rouse_control::{Control, Drivers};
use rouse_state::Table;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Every request of these tests is answered well within this.
const WAIT: Duration = Duration::from_secs(10);

struct Admin {
    addr: SocketAddr,
    _control: Control,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<()>,
}

impl Admin {
    async fn serve(cluster: Option<ClusterHandle>) -> Admin {
        let config = rouse_config::parse(
            "t.toml",
            "[[upstream]]\nname = \"app\"\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"127.0.0.1:9101\"\n",
        )
        .expect("valid");
        let table = Arc::new(Table::new(&config));
        let control = Control::spawn(Arc::clone(&table), Drivers::default());
        let state = AdminState {
            table: Arc::new(ArcSwap::new(table)),
            control: control.handle(),
            token: None,
            hosts: Vec::new(),
            reload: None,
            upgrade: None,
            history: Default::default(),
            cluster,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(rouse_admin::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Admin {
            addr,
            _control: control,
            stop: Some(stop),
            served,
        }
    }

    async fn get(&self, path: &str) -> String {
        let url = format!("http://{}{path}", self.addr);
        let answer = tokio::time::timeout(WAIT, reqwest::get(&url))
            .await
            .unwrap_or_else(|_| panic!("no answer to {url} within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(answer.status(), 200, "{url}");
        answer.text().await.unwrap()
    }

    async fn status(&self) -> Value {
        serde_json::from_str(&self.get("/status").await).unwrap()
    }

    async fn shut(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        tokio::time::timeout(WAIT, &mut self.served)
            .await
            .expect("the admin API stops")
            .unwrap();
    }
}

/// Two members, `edge-1` (this one) leading with a lease good for a minute.
fn leading(shell: &Shell) {
    let mut s = Snapshot::new("edge", "edge-1");
    s.etcd = EtcdState::Ok;
    s.leader = Some("edge-1".into());
    s.lease_until = Some(Instant::now() + Duration::from_secs(60));
    s.members = BTreeSet::from(["edge-1".to_owned(), "edge-2".to_owned()]);
    shell.snapshot.send_replace(Arc::new(s));
}

fn metric(text: &str, name: &str) -> Option<i64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{l}")))
    })
}

#[tokio::test]
async fn status_and_metrics_show_the_cluster_as_the_shell_last_saw_it() {
    let (handle, shell) = rouse_cluster::channels("edge", "edge-1");
    let admin = Admin::serve(Some(handle)).await;

    // Before etcd was ever reached: no leader, no members, unreachable.
    let status = admin.status().await;
    assert_eq!(
        status["cluster"],
        json!({"name": "edge", "id": "edge-1", "leader": null, "members": [], "etcd": "unreachable"})
    );
    let text = admin.get("/metrics").await;
    for (name, want) in [
        ("rouse_cluster_leader", 0),
        ("rouse_cluster_members", 0),
        ("rouse_cluster_etcd_up", 0),
    ] {
        assert_eq!(metric(&text, name), Some(want), "{name}\n{text}");
        assert!(
            text.contains(&format!("# TYPE {name} gauge")),
            "{name}\n{text}"
        );
    }

    leading(&shell);
    let status = admin.status().await;
    assert_eq!(
        status["cluster"],
        json!({"name": "edge", "id": "edge-1", "leader": "edge-1",
               "members": ["edge-1", "edge-2"], "etcd": "ok"})
    );
    // The rest of the answer is as it always is.
    assert_eq!(status["upstreams"][0]["name"], "app");
    let text = admin.get("/metrics").await;
    assert_eq!(metric(&text, "rouse_cluster_leader"), Some(1), "{text}");
    assert_eq!(metric(&text, "rouse_cluster_members"), Some(2), "{text}");
    assert_eq!(metric(&text, "rouse_cluster_etcd_up"), Some(1), "{text}");

    // Another replica leads: this one does not, though etcd answers.
    let mut s = Snapshot::clone(&shell.snapshot.borrow());
    s.leader = Some("edge-2".into());
    shell.snapshot.send_replace(Arc::new(s));
    assert_eq!(admin.status().await["cluster"]["leader"], "edge-2");
    let text = admin.get("/metrics").await;
    assert_eq!(metric(&text, "rouse_cluster_leader"), Some(0), "{text}");

    // Its own lease run out: the key still names it, but it no longer leads.
    let mut s = Snapshot::clone(&shell.snapshot.borrow());
    s.leader = Some("edge-1".into());
    s.lease_until = Some(Instant::now());
    shell.snapshot.send_replace(Arc::new(s));
    let text = admin.get("/metrics").await;
    assert_eq!(metric(&text, "rouse_cluster_leader"), Some(0), "{text}");

    // etcd lost: the shell clears the leader and marks it unreachable.
    let mut s = Snapshot::clone(&shell.snapshot.borrow());
    s.etcd = EtcdState::Unreachable;
    s.leader = None;
    s.lease_until = None;
    shell.snapshot.send_replace(Arc::new(s));
    let status = admin.status().await;
    assert_eq!(status["cluster"]["etcd"], "unreachable");
    assert_eq!(status["cluster"]["leader"], Value::Null);
    let text = admin.get("/metrics").await;
    assert_eq!(metric(&text, "rouse_cluster_etcd_up"), Some(0), "{text}");

    // OpenMetrics too.
    let answer = reqwest::Client::new()
        .get(format!("http://{}/metrics", admin.addr))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&answer, "rouse_cluster_members"),
        Some(2),
        "{answer}"
    );
    assert!(answer.ends_with("# EOF\n"));
    admin.shut().await;
}

#[tokio::test]
async fn without_a_cluster_there_is_no_cluster_key_nor_gauge() {
    let admin = Admin::serve(None).await;
    let status = admin.status().await;
    let object = status.as_object().expect("an object");
    assert!(!object.contains_key("cluster"), "{status}");
    assert!(object.contains_key("upstreams"), "{status}");
    let text = admin.get("/metrics").await;
    assert!(!text.contains("rouse_cluster"), "{text}");
    assert!(text.contains("rouse_in_flight"), "{text}");
    admin.shut().await;
}

#[tokio::test]
async fn the_dashboard_has_the_cluster_line() {
    let admin = Admin::serve(None).await;
    let page = admin.get("/").await;
    assert!(page.contains("id=\"cluster\""), "no cluster line");
    assert!(page.contains("renderCluster(status.cluster)"));
    admin.shut().await;
}
