//! The decision log's tests: line format, batching, drops and failed writes.

use std::sync::Mutex;

use super::*;

fn entry(i: usize) -> Entry {
    Entry {
        time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_603_600_120),
        api: Api::Batch,
        supplier: OrgNumber::parse("810418672").ok(),
        owner: OrgNumber::parse("991825827").ok(),
        scope: Some(format!("scope-{i}")),
        route: None,
        http: None,
        outcome: Outcome::Allow,
        reasons: vec!["delegated-scope".into()],
        errors: vec![],
        revision: "abc".into(),
        latency: Duration::from_micros(42),
    }
}

/// Bytes written so far, shared with the test.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Blocks every write until the gate opens.
struct Gated {
    gate: std::sync::mpsc::Receiver<()>,
    inner: Shared,
}

impl Write for Gated {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let _ = self.gate.recv();
        self.inner.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_line_has_every_field_in_order() {
    let mut out = Vec::new();
    entry(1).write_line(&mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"time\":\"2026-01-05T09:00:00.120Z\",\"api\":\"batch\",\"supplier\":\"810418672\",\
         \"owner\":\"991825827\",\"scope\":\"scope-1\",\"result\":\"allow\",\
         \"reasons\":[\"delegated-scope\"],\"errors\":[],\"revision\":\"abc\",\"latency_us\":42}\n"
    );
    let mut e = entry(2);
    e.supplier = None;
    e.route = Some("GET /x/{id}".into());
    let mut out = Vec::new();
    e.write_line(&mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(v.get("supplier").is_none());
    assert_eq!(v["route"], "GET /x/{id}");
}

#[test]
fn millis_are_always_three_digits() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
    assert_eq!(rfc3339_millis(t), "1970-01-02T00:00:00.000Z");
}

/// A writer that blocks fills the queue; further lines are dropped and
/// counted at once, and nothing that was queued is lost once it unblocks.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let metrics = Arc::new(Metrics::new());
    let (open, gate) = std::sync::mpsc::channel();
    let out = Shared::default();
    let writer = Gated {
        gate,
        inner: out.clone(),
    };
    let (log, handle) = start(Box::new(writer), 4, metrics.clone()).unwrap();
    // The first line is taken by the writer, which then blocks writing it;
    // four more fill the queue. Everything after that must not wait.
    log.record(entry(0));
    let started = Instant::now();
    let mut i = 1;
    while metrics.log_drops(Dropped::QueueFull) < 100 {
        log.record(entry(i));
        i += 1;
        assert!(i < 10_000, "the queue never filled");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "recording blocked"
    );
    let queued = i as u64 - 100;
    // Let every write through.
    drop(open);
    assert_eq!(handle.close(Duration::from_secs(5)).await, Ok(()));
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count() as u64, queued, "{text}");
    assert_eq!(metrics.log_lines(), queued);
    assert_eq!(metrics.log_drops(Dropped::QueueFull), 100);
}

/// Fails its first `fail` writes with ENOSPC, writing half the buffer.
struct Full {
    fail: usize,
    inner: Shared,
}

impl Write for Full {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.fail > 0 {
            self.fail -= 1;
            let _ = self.inner.write(&b[..b.len() / 2]);
            return Err(io::Error::from_raw_os_error(28));
        }
        self.inner.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_write_is_counted_and_the_next_line_parses() {
    let metrics = Arc::new(Metrics::new());
    let out = Shared::default();
    let full = Full {
        fail: 1,
        inner: out.clone(),
    };
    let (log, handle) = start(Box::new(full), 16, metrics.clone()).unwrap();
    log.record(entry(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    while metrics.log_drops(Dropped::WriteError) == 0 {
        assert!(Instant::now() < deadline, "the write error was not counted");
        std::thread::sleep(Duration::from_millis(5));
    }
    log.record(entry(1));
    assert_eq!(handle.close(Duration::from_secs(5)).await, Ok(()));
    assert_eq!(metrics.log_drops(Dropped::WriteError), 1);
    assert_eq!(metrics.log_lines(), 1);
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let last = text.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["scope"], "scope-1", "{text}");
    // Sent after the writer stopped: counted, not queued.
    log.record(entry(2));
    assert_eq!(metrics.log_drops(Dropped::Closed), 1);
}

/// A writer stuck in a write is left behind at close, and what it had
/// not written is counted.
#[tokio::test(flavor = "multi_thread")]
async fn close_gives_up_on_a_stuck_writer_and_counts_what_it_lost() {
    let metrics = Arc::new(Metrics::new());
    let (open, gate) = std::sync::mpsc::channel();
    let writer = Gated {
        gate,
        inner: Shared::default(),
    };
    let (log, handle) = start(Box::new(writer), 16, metrics.clone()).unwrap();
    for i in 0..10 {
        log.record(entry(i));
    }
    let started = Instant::now();
    let closed = handle.close(Duration::from_millis(200)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(closed, Err(Unwritten(10)));
    assert_eq!(metrics.log_drops(Dropped::Shutdown), 10);
    drop(open);
}
