//! The exposition: what a scrape reads (the counters, the snapshot's revision,
//! age and size, the process's descriptors and memory) encoded in the
//! Prometheus text format or OpenMetrics with `prometheus-client`.

#[allow(unused_imports)]
use super::*;

/// `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What a scrape sees: the counters and the current snapshot.
pub struct Exposition {
    registry: Registry,
    store: Option<StoreProbe>,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition")
            .field("registry", &self.registry)
            .field("store", &self.store.is_some())
            .finish()
    }
}

impl Exposition {
    /// The counters, and the snapshot `snapshot` gives at each scrape.
    pub fn new(metrics: Arc<Metrics>, snapshot: SnapshotProbe) -> Self {
        Self::with_store(metrics, snapshot, Vec::new(), None)
    }

    /// With the listeners' TLS (`listener` label: `gateway`, `admin`,
    /// `web`): its reloads, whether the files on disk are refused, and when
    /// the served certificate expires; and the shared store's status
    /// (`tilgang_store_*`, and `/health`), when there is one.
    pub fn with_store(
        metrics: Arc<Metrics>,
        snapshot: SnapshotProbe,
        tls: Vec<(&'static str, Arc<dyn TlsFacts>)>,
        store: Option<StoreProbe>,
    ) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape {
            metrics,
            snapshot,
            tls,
            store: store.clone(),
        }));
        Self { registry, store }
    }

    /// `GET /health`: whether this replica serves (`false` only while the
    /// shared store's first snapshot is not loaded: a stale replica still
    /// serves, and says so), and the details as JSON.
    pub fn health(&self) -> (bool, String) {
        #[derive(serde::Serialize)]
        struct Health {
            status: &'static str,
            backend: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            store: Option<StoreStatus>,
        }
        let store = self.store.as_ref().map(|probe| probe());
        let serving = store.as_ref().is_none_or(|s| s.loaded);
        let h = Health {
            status: if serving { "serving" } else { "not_serving" },
            backend: if store.is_some() { "postgres" } else { "files" },
            store,
        };
        let mut body = serde_json::to_string(&h).unwrap_or_else(|_| "{}".into());
        body.push('\n');
        (serving, body)
    }

    /// The exposition and its content type: OpenMetrics when the scraper's
    /// `Accept` header asks for it (Prometheus does), the Prometheus text
    /// format otherwise.
    pub fn render(&self, accept: Option<&str>) -> Result<(&'static str, String), std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
            Ok((OPENMETRICS, out))
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
            Ok((PROMETHEUS_TEXT, out))
        }
    }
}

/// Encodes everything on each scrape.
struct Scrape {
    metrics: Arc<Metrics>,
    snapshot: SnapshotProbe,
    tls: Vec<(&'static str, Arc<dyn TlsFacts>)>,
    store: Option<StoreProbe>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

type Fmt = Result<(), std::fmt::Error>;

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Vec<(&'static str, &'static str)>, u64)>,
) -> Fmt {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: V,
) -> Fmt {
    ConstGauge::new(v).encode(enc.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Fmt {
        let m = &*self.metrics;
        counter(
            &mut enc,
            "tilgang_decisions",
            "Calls that asked for a decision, by API and result (allow; deny; error: a deny forced by evaluation errors; invalid: a malformed request, nothing decided). Batch items count one each; a rejected batch counts once.",
            Api::ALL.iter().flat_map(|&api| {
                Outcome::ALL.iter().map(move |&o| {
                    (
                        vec![("api", api.as_str()), ("result", o.as_str())],
                        m.decisions(api, o),
                    )
                })
            }),
        )?;
        {
            let unit = Unit::Seconds;
            let mut h = enc.encode_descriptor(
                "tilgang_decision_duration",
                "Time to decide one request, from the decoded request to the decision (a batch item: its own decision).",
                Some(&unit),
                MetricType::Histogram,
            )?;
            for &api in Api::ALL {
                let (sum, count, buckets) = m.latency[api.index()].read();
                h.encode_family(&[("api", api.as_str())])?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        counter(
            &mut enc,
            "tilgang_reloads",
            "Changes on disk looked at by the reloader, by unit and result (accepted: published; rejected: the last good snapshot keeps deciding).",
            ReloadUnit::ALL.iter().flat_map(|&u| {
                let (accepted, rejected) = m.reloads(u);
                [
                    (vec![("unit", u.as_str()), ("result", "accepted")], accepted),
                    (vec![("unit", u.as_str()), ("result", "rejected")], rejected),
                ]
            }),
        )?;
        counter(
            &mut enc,
            "tilgang_admin_writes",
            "Admin writes (delegate, revoke, undo) by kind and result.",
            AdminKind::WRITES.iter().flat_map(|&k| {
                AdminResult::ALL.iter().map(move |&r| {
                    (
                        vec![("kind", k.as_str()), ("result", r.as_str())],
                        m.admin_writes(k, r),
                    )
                })
            }),
        )?;
        counter(
            &mut enc,
            "tilgang_admin_refusals",
            "Admin calls refused, by kind and reason (no or a bad bearer token, actor not the token's person, forbidden by the admin policy, unknown undo token, roles.json invalid).",
            AdminKind::ALL.iter().flat_map(|&k| {
                Refusal::ALL.iter().map(move |&r| {
                    (
                        vec![("kind", k.as_str()), ("reason", r.as_str())],
                        m.admin_refusals(k, r),
                    )
                })
            }),
        )?;
        if !self.tls.is_empty() {
            self.encode_tls(&mut enc)?;
        }
        if let Some(probe) = &self.store {
            encode_store(&mut enc, &probe())?;
        }
        counter(
            &mut enc,
            "tilgang_decision_log_lines",
            "Decision-log lines written.",
            [(vec![], m.log_lines())],
        )?;
        counter(
            &mut enc,
            "tilgang_decision_log_dropped",
            "Decision-log lines not written, by reason (queue_full: the writer could not keep up; write_error: the write failed; closed: after shutdown; shutdown: not written when shutdown's bound passed).",
            Dropped::ALL
                .iter()
                .map(|&d| (vec![("reason", d.as_str())], m.log_drops(d))),
        )?;
        counter(
            &mut enc,
            "tilgang_decision_log_write_errors",
            "Failed writes to the decision log.",
            [(vec![], m.log_write_errors.load(Relaxed))],
        )?;
        counter(
            &mut enc,
            "tilgang_log_lines_suppressed",
            "Lines of tilgang's own log (stderr) not written because their callsite logged faster than a burst of 200 and then 50 a second; a summary line per callsite says how many.",
            [(vec![], super::log_lines_suppressed())],
        )?;

        let snap = (self.snapshot)();
        let now = SystemTime::now();
        m.published_at(snap.revision(), now);
        let (since, delegations) = {
            let mut p = m
                .published
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let delegations = *p.delegations.get_or_insert_with(|| snap.delegations());
            (p.at, delegations)
        };
        enc.encode_descriptor(
            "tilgang_build",
            "The running build: tilgang's version and the compiler that built it.",
            None,
            MetricType::Info,
        )?
        .encode_info(&[
            ("version", env!("CARGO_PKG_VERSION")),
            ("rustc", env!("TILGANG_RUSTC_VERSION")),
        ])?;
        enc.encode_descriptor(
            "tilgang_snapshot",
            "The snapshot deciding now; its revision is a label.",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("revision", snap.revision())])?;
        let age = since
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        gauge(
            &mut enc,
            "tilgang_snapshot_age",
            "Seconds since the snapshot deciding now was published.",
            Some(&Unit::Seconds),
            age.as_secs_f64(),
        )?;
        gauge(
            &mut enc,
            "tilgang_snapshot_owners",
            "Owners with a delegation file loaded.",
            None,
            snap.owners() as i64,
        )?;
        gauge(
            &mut enc,
            "tilgang_snapshot_delegations",
            "Delegations (owner, supplier pairs) loaded.",
            None,
            delegations as i64,
        )?;
        process(&mut enc, m.started)
    }
}

impl Scrape {
    /// The listeners' TLS: reloads, refused files, certificate expiry.
    fn encode_tls(&self, enc: &mut DescriptorEncoder) -> Fmt {
        counter(
            enc,
            "tilgang_tls_reloads",
            "Certificate changes on disk put in force, by listener.",
            self.tls
                .iter()
                .map(|(l, t)| (vec![("listener", *l)], t.reloads())),
        )?;
        let mut m = enc.encode_descriptor(
            "tilgang_tls_files_refused",
            "1 while a listener's certificate files on disk cannot be used (the last good certificate serves on; the log says why).",
            None,
            MetricType::Gauge,
        )?;
        for (l, t) in &self.tls {
            let refused = i64::from(t.files_refused());
            ConstGauge::new(refused).encode(m.encode_family(&[("listener", *l)])?)?;
        }
        let mut m = enc.encode_descriptor(
            "tilgang_tls_certificate_expiry_timestamp",
            "When the certificate a listener serves expires (notAfter), in Unix seconds.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (l, t) in &self.tls {
            ConstGauge::new(t.expires()).encode(m.encode_family(&[("listener", *l)])?)?;
        }
        Ok(())
    }
}

/// The shared store's follower: revision, staleness, connection.
fn encode_store(enc: &mut DescriptorEncoder, s: &StoreStatus) -> Fmt {
    gauge(
        enc,
        "tilgang_store_revision",
        "The shared store's revision this replica decides at.",
        None,
        i64::try_from(s.revision).unwrap_or(i64::MAX),
    )?;
    if let Some(staleness) = s.staleness_seconds {
        gauge(
            enc,
            "tilgang_store_staleness",
            "Seconds since the last successful sync with the shared store (absent before the first). Past --max-staleness, decisions use no delegations.",
            Some(&Unit::Seconds),
            staleness,
        )?;
    }
    gauge(
        enc,
        "tilgang_store_connected",
        "1 while the follower holds a live connection to the shared store.",
        None,
        i64::from(s.connected),
    )?;
    gauge(
        enc,
        "tilgang_store_withheld",
        "1 while decisions use no delegations: nothing loaded from the shared store yet, or no sync for longer than --max-staleness.",
        None,
        i64::from(s.withheld.is_some()),
    )
}

/// The standard process metrics (the names every Prometheus client library
/// uses, so existing dashboards work), read from `/proc` at scrape time.
/// What cannot be read is left out.
fn process(enc: &mut DescriptorEncoder, started: SystemTime) -> Fmt {
    if let Some(cpu) = cpu_seconds() {
        let m = enc.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(cpu).encode(m)?;
    }
    gauge(
        enc,
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch, in seconds.",
        None,
        unix_seconds(started).floor(),
    )?;
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // Includes the descriptor of the listing itself.
        let open = dir.count().saturating_sub(1);
        gauge(
            enc,
            "process_open_fds",
            "Number of open file descriptors.",
            None,
            open as i64,
        )?;
    }
    gauge(
        enc,
        "process_max_fds",
        "Maximum number of open file descriptors (the soft limit).",
        None,
        max_fds(),
    )?;
    if let Some(rss) = resident_bytes() {
        gauge(
            enc,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            None,
            rss,
        )?;
    }
    Ok(())
}

/// The soft `RLIMIT_NOFILE` (`i64::MAX` when unlimited).
fn max_fds() -> i64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// User plus system CPU time, from `/proc/self/stat` (in clock ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds_of(&stat, rustix::param::clock_ticks_per_second())
}

/// `utime` + `stime` of a `/proc/<pid>/stat` line, in seconds. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted
/// after its last `)`: `utime` and `stime` are the 12th and 13th there.
fn cpu_seconds_of(stat: &str, ticks_per_second: u64) -> Option<f64> {
    let (_, after) = stat.rsplit_once(')')?;
    let mut fields = after.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    (ticks_per_second > 0).then(|| (user + system) as f64 / ticks_per_second as f64)
}

/// `VmRSS` from `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::cpu_seconds_of;

    #[test]
    fn cpu_time_is_counted_after_the_command_name() {
        // A command name with a space and a `)` of its own.
        let stat = "4242 (tokio ) rt) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(cpu_seconds_of(stat, 100), Some(3.0));
        assert_eq!(cpu_seconds_of(stat, 0), None);
        assert_eq!(cpu_seconds_of("4242 (x) S 1", 100), None);
        assert_eq!(cpu_seconds_of("garbage", 100), None);
    }
}
