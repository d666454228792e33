//! Durability: kill -9 the real server while writes are in flight, then check
//! that every acknowledged write survived, every file still loads, and no temp
//! file outlives the restart. (What a power cut would take, a missing fsync,
//! is `durability.rs`'s to catch.)

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tilgang::proto::DelegateRequest;
use tilgang::proto::delegations_client::DelegationsClient;

use crate::util::*;

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9() {
    let work = Workdir::new();
    let server = ServerProcess::spawn(&work);
    let acked: Arc<Mutex<BTreeSet<(String, String)>>> = Arc::default();
    let suppliers = org_numbers(20_000_000, 400);
    let owners = [OWNER, OTHER_OWNER];
    let actors = [DAGL, OTHER_ADMIN];

    // Eight writers, two owners, until the server dies under them.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let url = format!("http://{}", server.admin);
        let acked = acked.clone();
        let mine: Vec<String> = suppliers.iter().skip(w).step_by(8).cloned().collect();
        tasks.push(tokio::spawn(async move {
            let Ok(mut c) = DelegationsClient::connect(url).await else {
                return;
            };
            for (i, sup) in mine.into_iter().enumerate() {
                let k = (w + i) % 2;
                let r = c
                    .delegate(DelegateRequest {
                        owner: owners[k].into(),
                        supplier: sup.clone(),
                        rights: vec!["instances-read".into()],
                        actor: actors[k].into(),
                    })
                    .await;
                match r {
                    Ok(_) => {
                        acked.lock().unwrap().insert((owners[k].to_string(), sup));
                    }
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Let a good number of writes land, then kill without warning.
    eventually("some writes to be acknowledged", || {
        let acked = acked.clone();
        async move { acked.lock().unwrap().len() >= 60 }
    })
    .await;
    server.signal("-KILL");
    for t in tasks {
        t.await.unwrap();
    }
    drop(server);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 60);

    // Every file still loads, and every acknowledged delegation is in it.
    let s = TestServer::start_in(work, |_| {}).await;
    // A write the kill interrupted may have left its temp file: the restart
    // removed it.
    for dir in ["delegations", "undo"] {
        for e in std::fs::read_dir(s.work.data().join(dir)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(".tilgang-tmp-"),
                "{dir}/{name} left behind"
            );
        }
    }
    for (owner, sup) in &acked {
        assert!(
            s.decide(sup, owner, READ).await.allowed,
            "acknowledged delegation {owner} -> {sup} was lost"
        );
    }
    // The audit log has a whole line for every acknowledged change.
    let audit = std::fs::read_to_string(s.work.data().join("audit.jsonl")).unwrap();
    let mut lines = 0;
    for l in audit.lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("no torn audit line");
        lines += 1;
    }
    assert!(
        lines >= acked.len(),
        "{lines} audit lines for {} acks",
        acked.len()
    );
    s.stop().await;
}
