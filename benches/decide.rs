//! Decision latency against snapshots of different sizes, and the cost of the
//! snapshot update paths.
//!
//! Run with `cargo bench --bench decide`. The claim it checks: `engine::decide`
//! assembles a per-request entity slice (catalogue entities plus the one delegation
//! for the pair), so its latency does not grow with the number of delegations
//! stored. Compare `decide/allow/1` with `decide/allow/100000`; the
//! `allow_on_1_while_resident` rows show how much of any difference is the bigger
//! heap of the process rather than the snapshot being decided against.
//!
//! Data is generated into temporary data directories in the same Cedar entity JSON
//! format as `tests/fixtures/data/delegations/*.json` and loaded with
//! `load_snapshot` against the fixture policies (`tests/fixtures/policies`, a
//! frozen copy of the shipped ones, so a policy change does not move the figures),
//! exactly as `tilgang serve` loads.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tempfile::TempDir;
use tilgang::engine::{AccessRequest, decide};
use tilgang::ids::{OrgNumber, Scope};
use tilgang::snapshot::load::{PolicySource, load_snapshot, parse_owner_file};
use tilgang::snapshot::{OwnerDelegations, Snapshot};

/// The policies the benchmarks decide with (the rights and scope below are theirs).
fn fixture_policies() -> PolicySource {
    PolicySource::Dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies"))
}

const SCOPE: &str = "altinn:serviceowner/instances.read";
const RIGHTS: [&str; 2] = ["instances-full", "instances-read"];
/// First 8 digits of the first owner / supplier org number. Disjoint ranges, so a
/// supplier is never its own owner.
const OWNER_BASE: u32 = 90_000_000;
const SUPPLIER_BASE: u32 = 80_000_000;
const SUPPLIER_POOL: usize = 10_000;

/// Valid org numbers (mod-11 check digit) counting up from an 8-digit prefix.
/// Prefixes whose check digit would be 10 have no valid number and are skipped.
fn org_numbers(base: u32) -> impl Iterator<Item = String> {
    const WEIGHTS: [u32; 8] = [3, 2, 7, 6, 5, 4, 3, 2];
    (base..100_000_000).filter_map(|prefix| {
        let digits = format!("{prefix:08}");
        let sum: u32 = digits
            .bytes()
            .zip(WEIGHTS)
            .map(|(d, w)| w * u32::from(d - b'0'))
            .sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => return None,
            c => c,
        };
        Some(format!("{digits}{check}"))
    })
}

/// One owner's delegation file, in the fixture format.
fn owner_file_json(owner: &str, suppliers: &[&str], version: u32) -> String {
    let mut out = String::from("[\n");
    for (i, supplier) in suppliers.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        let right = RIGHTS[(i + version as usize) % RIGHTS.len()];
        write!(
            out,
            r#"  {{
    "uid": {{ "type": "Tilgang::Delegation", "id": "{owner}/{supplier}" }},
    "attrs": {{
      "owner": {{ "type": "Tilgang::Organization", "id": "{owner}" }},
      "supplier": {{ "type": "Tilgang::Organization", "id": "{supplier}" }},
      "rights": [{{ "type": "Tilgang::Right", "id": "{right}" }}],
      "delegatedBy": "01017012345",
      "createdAt": "2026-01-05T09:00:00Z",
      "updatedAt": "2026-01-0{day}T09:00:00Z"
    }},
    "parents": []
  }}"#,
            day = 5 + version % 4,
        )
        .expect("writing to a String");
    }
    out.push_str("\n]\n");
    out
}

/// A generated data directory, with the generated ids kept for building requests.
struct Dataset {
    dir: TempDir,
    owners: Vec<String>,
    suppliers: Vec<String>,
    per_owner: usize,
}

impl Dataset {
    /// `owners` owners with `per_owner` suppliers each.
    fn generate(owners: usize, per_owner: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let delegations = dir.path().join("delegations");
        std::fs::create_dir_all(&delegations).expect("delegations dir");
        std::fs::write(dir.path().join("roles.json"), "[]\n").expect("roles.json");
        let owner_ids: Vec<String> = org_numbers(OWNER_BASE).take(owners).collect();
        let suppliers: Vec<String> = org_numbers(SUPPLIER_BASE).take(SUPPLIER_POOL).collect();
        for (i, owner) in owner_ids.iter().enumerate() {
            let mine = Self::suppliers_of(&suppliers, i, per_owner);
            let json = owner_file_json(owner, &mine, 0);
            std::fs::write(delegations.join(format!("{owner}.json")), json).expect("owner file");
        }
        Self {
            dir,
            owners: owner_ids,
            suppliers,
            per_owner,
        }
    }

    fn suppliers_of(pool: &[String], owner_index: usize, per_owner: usize) -> Vec<&str> {
        (0..per_owner)
            .map(|j| pool[(owner_index * per_owner + j) % pool.len()].as_str())
            .collect()
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn delegations(&self) -> usize {
        self.owners.len() * self.per_owner
    }

    fn load(&self) -> Snapshot {
        let start = Instant::now();
        let snap = load_snapshot(&fixture_policies(), self.path()).expect("generated data loads");
        eprintln!(
            "setup: load_snapshot of {} delegations ({} owners) took {:.2?}",
            self.delegations(),
            self.owners.len(),
            start.elapsed()
        );
        assert_eq!(snap.owners.len(), self.owners.len());
        snap
    }

    /// Up to `n` delegated (owner, supplier) pairs spread over the whole data set.
    fn delegated_requests(&self, n: usize) -> Vec<AccessRequest> {
        let n = n.min(self.delegations());
        (0..n)
            .map(|k| {
                let i = k * self.owners.len() / n;
                let j = k % self.per_owner;
                let supplier = Self::suppliers_of(&self.suppliers, i, self.per_owner)[j];
                request(supplier, &self.owners[i])
            })
            .collect()
    }

    /// A pair the first owner has not delegated to.
    fn undelegated_request(&self) -> AccessRequest {
        let mine = Self::suppliers_of(&self.suppliers, 0, self.per_owner);
        let other = self
            .suppliers
            .iter()
            .find(|s| !mine.contains(&s.as_str()))
            .expect("a supplier outside the first owner's");
        request(other, &self.owners[0])
    }
}

fn request(supplier: &str, owner: &str) -> AccessRequest {
    AccessRequest {
        supplier: OrgNumber::parse(supplier).expect("generated supplier is valid"),
        owner: OrgNumber::parse(owner).expect("generated owner is valid"),
        scope: Scope::parse(SCOPE).expect("scope"),
    }
}

fn bench_decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    // A one-delegation snapshot that stays loaded: deciding against it while a big
    // snapshot is also in memory (`allow_on_1_while_resident/N`) separates what the
    // snapshot's size costs the lookup from what a bigger process heap costs
    // every allocation (the per-request entity slice allocates).
    let tiny = Dataset::generate(1, 1);
    let tiny_snap = tiny.load();
    let tiny_req = tiny.delegated_requests(1).remove(0);
    // (delegations, owners, suppliers per owner): many owners, a few suppliers each.
    for (delegations, owners, per_owner) in [(1, 1, 1), (1_000, 250, 4), (100_000, 25_000, 4)] {
        let data = Dataset::generate(owners, per_owner);
        assert_eq!(data.delegations(), delegations);
        let snap = data.load();

        let allowed = data.delegated_requests(64);
        for req in &allowed {
            let d = decide(&snap, req);
            assert!(d.allowed, "expected allow for {req:?}: {d:?}");
        }
        let mut next = 0usize;
        group.bench_with_input(
            BenchmarkId::new("allow", delegations),
            &allowed,
            |b, reqs| {
                b.iter(|| {
                    next = (next + 1) % reqs.len();
                    decide(black_box(&snap), black_box(&reqs[next]))
                })
            },
        );

        let denied = data.undelegated_request();
        let d = decide(&snap, &denied);
        assert!(
            !d.allowed && d.errors.is_empty(),
            "expected plain deny: {d:?}"
        );
        group.bench_with_input(BenchmarkId::new("deny", delegations), &denied, |b, req| {
            b.iter(|| decide(black_box(&snap), black_box(req)))
        });

        if delegations > 1 {
            group.bench_with_input(
                BenchmarkId::new("allow_on_1_while_resident", delegations),
                &tiny_req,
                |b, req| b.iter(|| decide(black_box(&tiny_snap), black_box(req))),
            );
        }
    }
    group.finish();
}

fn bench_with_owner(c: &mut Criterion) {
    let mut group = c.benchmark_group("with_owner");
    // One supplier per owner: `with_owner` copies the owner map, so its cost depends
    // on the number of owners, not on what each owner holds.
    for owners in [1_000, 100_000] {
        let data = Dataset::generate(owners, 1);
        let snap = data.load();
        // The update: the middle owner's file rewritten with one more supplier, parsed
        // once up front the way the watcher does before calling `with_owner`.
        let i = owners / 2;
        let owner = OrgNumber::parse(&data.owners[i]).expect("owner");
        let suppliers = Dataset::suppliers_of(&data.suppliers, i, 2);
        let json = owner_file_json(&data.owners[i], &suppliers, 1);
        let by_supplier = parse_owner_file("bench.json", &owner, json.as_bytes(), &snap.policies)
            .expect("updated owner file parses");
        let slice = Arc::new(OwnerDelegations {
            by_supplier,
            digest: [1; 32],
            files: Vec::new(),
        });
        let updated = snap.with_owner(owner, Some(slice.clone()));
        assert_ne!(updated.revision(), snap.revision());
        assert_eq!(updated.owners.len(), owners);
        drop(updated);

        group.bench_function(BenchmarkId::from_parameter(owners), |b| {
            b.iter(|| snap.with_owner(black_box(owner), Some(slice.clone())))
        });
    }
    group.finish();
}

fn bench_load(c: &mut Criterion) {
    let mut group = c.benchmark_group("load_snapshot");
    group.sample_size(10);
    let data = Dataset::generate(1_000, 1);
    group.bench_function(BenchmarkId::from_parameter(1_000), |b| {
        b.iter(|| load_snapshot(&fixture_policies(), black_box(data.path())).expect("loads"))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_decide, bench_with_owner, bench_load
}
criterion_main!(benches);
