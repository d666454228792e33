//! What reporting one decision costs the service that made it:
//! `Telemetry::decided` with counters only, and with a decision log (the
//! entry built and handed to the queue; the writer thread writes to
//! `/dev/null`, or is kept from draining so every line is a counted drop).
//!
//! Run with `cargo bench --bench telemetry`. Compare with `decide/allow/1`
//! from `cargo bench --bench decide` (the decision itself).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tilgang::engine::Decision;
use tilgang::ids::{OrgNumber, Scope};
use tilgang::telemetry::decision_log::{self, Target};
use tilgang::telemetry::metrics::{Api, Metrics};
use tilgang::telemetry::{Decided, Telemetry};

fn report(c: &mut Criterion) {
    let supplier = OrgNumber::parse("810418672").unwrap();
    let owner = OrgNumber::parse("991825827").unwrap();
    let scope = Scope::parse("altinn:serviceowner/instances.read").unwrap();
    let decision = Decision {
        allowed: true,
        reasons: vec!["delegated-scope".into()],
        errors: vec![],
    };
    let decided = |t: &Telemetry| {
        t.decided(black_box(Decided {
            api: Api::IsAuthorized,
            started: Instant::now(),
            supplier: Some(&supplier),
            owner: &owner,
            scope: &scope,
            route: None,
            decision: &decision,
            revision: "bcd2d8fe49c70a0c",
            http: None,
        }))
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("decided");
    group.measurement_time(Duration::from_secs(3));

    let counters = Telemetry::disabled();
    group.bench_function("counters", |b| b.iter(|| decided(&counters)));

    let metrics = Arc::new(Metrics::new());
    let (log, writer) =
        decision_log::open(&Target::File("/dev/null".into()), 16_384, metrics.clone()).unwrap();
    let logged = Telemetry::new(metrics, Some(log));
    group.bench_function("decision_log", |b| b.iter(|| decided(&logged)));
    drop(logged);
    let _ = rt.block_on(writer.close(Duration::from_secs(5)));

    // A queue of one line that is never drained: the cost of a counted drop.
    let metrics = Arc::new(Metrics::new());
    let (tx, gate) = std::sync::mpsc::channel::<()>();
    struct Blocked(std::sync::mpsc::Receiver<()>);
    impl std::io::Write for Blocked {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (log, writer) = decision_log::start(Box::new(Blocked(gate)), 1, metrics.clone()).unwrap();
    let full = Telemetry::new(metrics, Some(log));
    group.bench_function("queue_full", |b| b.iter(|| decided(&full)));
    group.finish();
    drop((tx, full));
    let _ = rt.block_on(writer.close(Duration::from_secs(5)));
}

criterion_group!(benches, report);
criterion_main!(benches);
