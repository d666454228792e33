//! The log gate: no place in the code (a callsite: one `tracing` macro,
//! tilgang's or a library's) writes more than a burst of [`BURST`] lines and
//! then [`PER_SECOND`] a second to the process's own log, whatever a client
//! makes it do. A line over the rate is dropped and counted
//! (`tilgang_log_lines_suppressed_total`), and every [`REPORT_EVERY`] a
//! summary line per callsite says how many of its lines were dropped. Without
//! it, a flood of refused admin calls or of HTTP/2 connections that reset
//! their streams (h2 warns once per connection) writes a line per call.
//!
//! [`Buckets`] is the rate itself: token buckets keyed by callsite, with the
//! instants taken from the caller (no clock, no I/O). [`LogGate`] is the
//! `tracing_subscriber` layer that asks it about every event that passed the
//! filter, before any format (text or JSON) sees the event; its reporter
//! thread writes the summaries. Lines bridged from the `log` crate share one
//! callsite per level.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tracing::Subscriber;
use tracing::callsite::Identifier;
use tracing::{Event, Metadata};
use tracing_subscriber::layer::{Context, Layer};

/// Lines one callsite may write at once, like the audit log's refusal gate
/// (`store::audit::RefusalGate`).
pub const BURST: f64 = 200.0;
/// Lines one callsite may write a second, once its burst is spent.
pub const PER_SECOND: f64 = 50.0;
/// A callsite that had lines dropped gets one summary line this often.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);
/// The target of the summary lines, which are not gated themselves: there is
/// at most one per callsite per [`REPORT_EVERY`].
pub const SUMMARY_TARGET: &str = "tilgang::log_gate";

/// One token bucket per key, and what each dropped since its last report.
#[derive(Debug)]
pub struct Buckets<K> {
    burst: f64,
    per_second: f64,
    buckets: HashMap<K, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Dropped since the last report.
    suppressed: u64,
    /// When the first of those was dropped.
    since: Option<Instant>,
}

/// What a report says about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suppressed {
    pub lines: u64,
    /// From the first line dropped to the report.
    pub over: Duration,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(burst: f64, per_second: f64) -> Self {
        Self {
            burst,
            per_second,
            buckets: HashMap::new(),
        }
    }

    /// May a line of `key` be written at `now`? A `false` is counted for the
    /// next report.
    pub fn admit(&mut self, key: &K, now: Instant) -> bool {
        let (burst, per_second) = (self.burst, self.per_second);
        let b = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
            suppressed: 0,
            since: None,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * per_second;
        b.tokens = (b.tokens + refill).min(burst);
        b.at = b.at.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return true;
        }
        b.suppressed += 1;
        b.since.get_or_insert(now);
        false
    }

    /// The keys that dropped lines, each once its first drop is at least
    /// `every` old (all of them with `Duration::ZERO`); their counts start
    /// again.
    pub fn due(&mut self, now: Instant, every: Duration) -> Vec<(K, Suppressed)> {
        let mut due = Vec::new();
        for (key, b) in &mut self.buckets {
            let Some(since) = b.since else { continue };
            let over = now.saturating_duration_since(since);
            if over >= every {
                due.push((
                    key.clone(),
                    Suppressed {
                        lines: std::mem::take(&mut b.suppressed),
                        over,
                    },
                ));
                b.since = None;
            }
        }
        due
    }
}

/// The layer. Put it after the filter, so it sees only lines that would be
/// written, and before the format.
#[derive(Debug, Clone)]
pub struct LogGate {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    buckets: Buckets<Identifier>,
    /// Where each callsite is, for its summary line.
    names: HashMap<Identifier, &'static Metadata<'static>>,
}

impl LogGate {
    pub fn new(burst: f64, per_second: f64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                buckets: Buckets::new(burst, per_second),
                names: HashMap::new(),
            })),
        }
    }

    /// Start the thread that writes the summaries every second that some
    /// are due; it ends when the gate is gone.
    pub fn spawn_reporter(&self) -> std::io::Result<()> {
        let state = Arc::downgrade(&self.state);
        std::thread::Builder::new()
            .name("log-gate".into())
            .spawn(move || report_until_gone(&state))?;
        Ok(())
    }

    /// Write the summaries due at `now` (every one, with `Duration::ZERO`).
    pub fn report(&self, now: Instant, every: Duration) {
        report(&self.state, now, every);
    }
}

fn report_until_gone(state: &Weak<Mutex<State>>) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let Some(state) = state.upgrade() else { return };
        report(&state, Instant::now(), REPORT_EVERY);
    }
}

fn report(state: &Mutex<State>, now: Instant, every: Duration) {
    // Taken under the lock, written after it: a summary passes the gate too.
    let due: Vec<_> = {
        let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = s.buckets.due(now, every);
        due.into_iter()
            .filter_map(|(id, n)| s.names.get(&id).map(|m| (*m, n)))
            .collect()
    };
    for (m, n) in due {
        let at = match (m.file(), m.line()) {
            (Some(file), Some(line)) => format!("{file}:{line}"),
            _ => m.name().to_string(),
        };
        tracing::warn!(
            target: SUMMARY_TARGET,
            suppressed = n.lines,
            seconds = n.over.as_secs(),
            from = m.target(),
            level = %m.level(),
            at = %at,
            "suppressed {} log lines from {} ({at}) in the last {} s: it logged faster than {PER_SECOND} a second",
            n.lines,
            m.target(),
            n.over.as_secs().max(1),
        );
    }
}

impl<S: Subscriber> Layer<S> for LogGate {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let m = event.metadata();
        if m.target() == SUMMARY_TARGET {
            return true;
        }
        let id = m.callsite();
        let admitted = {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let admitted = s.buckets.admit(&id, Instant::now());
            if !admitted {
                s.names.entry(id).or_insert(m);
            }
            admitted
        };
        if !admitted {
            super::metrics::log_line_suppressed();
        }
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_key_gets_its_burst_then_its_rate() {
        let mut b = Buckets::new(200.0, 50.0);
        let t0 = Instant::now();
        let admitted = (0..1000).filter(|_| b.admit(&"a", t0)).count();
        assert_eq!(admitted, 200);
        // Another key has a bucket of its own.
        assert!(b.admit(&"b", t0));
        // A second later: 50 more, not 51.
        let admitted = (0..1000).filter(|_| b.admit(&"a", t0 + S)).count();
        assert_eq!(admitted, 50);
        // Ten seconds of a steady flood (100 a second): 50 a second.
        let admitted = (1..=1000)
            .filter(|i| b.admit(&"a", t0 + S + Duration::from_millis(10 * i)))
            .count();
        assert_eq!(admitted, 500);
        // Quiet for long enough: the whole burst again, never more.
        let admitted = (0..1000).filter(|_| b.admit(&"a", t0 + 100 * S)).count();
        assert_eq!(admitted, 200);
    }

    #[test]
    fn a_clock_that_goes_back_refills_nothing() {
        let mut b = Buckets::new(1.0, 50.0);
        let t0 = Instant::now() + 10 * S;
        assert!(b.admit(&"a", t0));
        assert!(!b.admit(&"a", t0 - S));
        assert!(!b.admit(&"a", t0));
        assert!(b.admit(&"a", t0 + S / 50));
    }

    #[test]
    fn reports_count_what_was_dropped_once_it_is_old_enough() {
        let mut b = Buckets::new(2.0, 1.0);
        let t0 = Instant::now();
        for _ in 0..5 {
            b.admit(&"a", t0);
        }
        assert!(b.admit(&"b", t0));
        assert_eq!(b.due(t0 + S, 5 * S), vec![], "not yet 5 s old");
        let due = b.due(t0 + 5 * S, 5 * S);
        assert_eq!(
            due,
            vec![(
                "a",
                Suppressed {
                    lines: 3,
                    over: 5 * S
                }
            )]
        );
        assert_eq!(b.due(t0 + 20 * S, 5 * S), vec![], "counted once");
        // Everything, at once, when asked with zero (at exit).
        for _ in 0..10 {
            b.admit(&"b", t0 + 20 * S);
        }
        let due = b.due(t0 + 20 * S, Duration::ZERO);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, "b");
        assert_eq!(due[0].1.lines, 8);
    }

    /// Counts the events that reach it, and their messages.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            struct Message(String);
            impl tracing::field::Visit for Message {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    if f.name() == "message" {
                        self.0 = format!("{v:?}");
                    }
                }
            }
            let mut m = Message(String::new());
            event.record(&mut m);
            self.0.lock().unwrap().push(m.0);
        }
    }

    #[test]
    fn the_layer_stops_a_flood_per_callsite_and_reports_it() {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = Seen::default();
        let gate = LogGate::new(10.0, 1.0);
        let subscriber = tracing_subscriber::registry()
            .with(gate.clone())
            .with(seen.clone());
        let before = crate::telemetry::metrics::log_lines_suppressed();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..100 {
                tracing::warn!("flood");
            }
            tracing::info!("another callsite");
            gate.report(Instant::now(), Duration::ZERO);
        });
        let seen = seen.0.lock().unwrap();
        let floods = seen.iter().filter(|m| *m == "flood").count();
        // Ten, and at most one more if the loop took a second.
        assert!((10..=11).contains(&floods), "{floods}");
        assert!(seen.iter().any(|m| m == "another callsite"));
        let summary = seen.last().unwrap();
        assert!(
            summary.starts_with(&format!(
                "suppressed {} log lines from tilgang::",
                100 - floods
            )),
            "{summary}"
        );
        assert!(crate::telemetry::metrics::log_lines_suppressed() - before >= 89);
    }
}
