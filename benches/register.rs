//! What the organization register costs at the size of the real download:
//! writes N synthetic entries (default 1,000,000) in the download's shape to
//! a gzip'd temp file, loads it with `Register::load`, and prints the load
//! time, the memory it holds (computed, and the process's RSS growth) and
//! the latency of `search` over a mix of search-box queries (p50, p99, max;
//! each query's fastest of three runs).
//!
//! ```sh
//! cargo bench --bench register                       # 1,000,000 entries
//! cargo bench --bench register -- --entries 200000
//! ```
//!
//! Not a criterion benchmark: the figures wanted are one load and a latency
//! distribution, not a mean of repeated runs.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use tilgang::ids::OrgNumber;
use tilgang::register::Register;

const WORDS: &[&str] = &[
    "BRØNNØYSUND",
    "NORDLYS",
    "FJORD",
    "BYGG",
    "EIENDOM",
    "HOLDING",
    "CONSULTING",
    "TRANSPORT",
    "REGNSKAP",
    "ELEKTRO",
    "RØRLEGGER",
    "MALERMESTER",
    "SERVICE",
    "INVEST",
    "TEKNIKK",
    "HANDEL",
    "DATA",
    "SOLUTIONS",
    "VEST",
    "NORD",
    "SØR",
    "ØST",
    "AGDER",
    "TRØNDELAG",
    "BERGEN",
    "OSLO",
    "STAVANGER",
    "TROMSØ",
    "ÅLESUND",
    "HANSEN",
    "JOHANSEN",
    "OLSEN",
    "LARSEN",
    "ANDERSEN",
    "PEDERSEN",
    "NILSEN",
    "KRISTIANSEN",
    "JENSEN",
    "KARLSEN",
    "PETTERSEN",
    "ERIKSEN",
    "BERG",
    "HAUGEN",
    "HAGEN",
    "DAHL",
    "ARKITEKTER",
    "TANNLEGE",
    "FRISØR",
    "BIL",
    "MASKIN",
    "ENTREPRENØR",
    "SKOG",
    "GÅRD",
    "FISKE",
    "HAVBRUK",
    "BORETTSLAG",
    "SAMEIE",
    "IDRETTSLAG",
    "VENNEFORENING",
    "KONSULENT",
    "UTVIKLING",
];

const FORMS: &[(&str, &str, &str)] = &[
    ("AS", "Aksjeselskap", " AS"),
    ("AS", "Aksjeselskap", " AS"),
    ("AS", "Aksjeselskap", " AS"),
    ("ENK", "Enkeltpersonforetak", ""),
    ("ENK", "Enkeltpersonforetak", ""),
    (
        "BEDR",
        "Underenhet til næringsdrivende og offentlig forvaltning",
        "",
    ),
    ("FLI", "Forening/lag/innretning", ""),
    ("ESEK", "Eierseksjonssameie", ""),
    ("BRL", "Borettslag", ""),
    ("ASA", "Allmennaksjeselskap", " ASA"),
];

/// A small deterministic generator (xorshift64*): the same file every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The `n` valid org numbers after `from` (eight digits); the check digit
/// is found by `OrgNumber::parse`, the one mod-11 rule.
fn org_numbers(from: u32, n: usize) -> Vec<String> {
    (from..)
        .filter_map(|prefix| {
            (0..10)
                .map(|d| format!("{prefix:08}{d}"))
                .find(|s| OrgNumber::parse(s).is_ok())
        })
        .take(n)
        .collect()
}

fn write_download(path: &std::path::Path, n: usize) -> (u64, Vec<String>) {
    let numbers = org_numbers(81_000_000, n);
    let file = std::fs::File::create(path).unwrap();
    let mut out = BufWriter::new(flate2::write::GzEncoder::new(
        BufWriter::new(file),
        flate2::Compression::fast(),
    ));
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut raw = 0u64;
    let mut sample_names = Vec::new();
    out.write_all(b"[").unwrap();
    for (i, number) in numbers.iter().enumerate() {
        let words = 2 + rng.below(3);
        let mut name = String::new();
        for w in 0..words {
            if w > 0 {
                name.push(' ');
            }
            name.push_str(WORDS[rng.below(WORDS.len())]);
        }
        let (code, description, suffix) = FORMS[rng.below(FORMS.len())];
        name.push_str(suffix);
        if i % 1000 == 0 {
            sample_names.push(name.clone());
        }
        let deleted = if rng.below(50) == 0 {
            r#""slettedato":"2021-03-01","#
        } else {
            ""
        };
        let parent = if code == "BEDR" {
            format!(
                r#""overordnetEnhet":"{}","#,
                numbers[rng.below(numbers.len())]
            )
        } else {
            String::new()
        };
        let entry = format!(
            r#"{}{{"organisasjonsnummer":"{number}","navn":"{name}","organisasjonsform":{{"kode":"{code}","beskrivelse":"{description}","_links":{{"self":{{"href":"https://data.brreg.no/enhetsregisteret/api/organisasjonsformer/{code}"}}}}}},{deleted}{parent}"registreringsdatoEnhetsregisteret":"2005-0{}-1{}","registrertIMvaregisteret":{},"naeringskode1":{{"kode":"43.22{}","beskrivelse":"Rørleggerarbeid"}},"antallAnsatte":{},"forretningsadresse":{{"land":"Norge","landkode":"NO","postnummer":"{:04}","poststed":"OSLO","adresse":["Storgata {}"],"kommune":"OSLO","kommunenummer":"0301"}},"konkurs":false,"underAvvikling":false,"underTvangsavviklingEllerTvangsopplosning":false,"maalform":"Bokmål","_links":{{"self":{{"href":"https://data.brreg.no/enhetsregisteret/api/enheter/{number}"}}}}}}"#,
            if i == 0 { "" } else { "," },
            1 + rng.below(9),
            rng.below(10),
            rng.below(2) == 0,
            rng.below(10),
            rng.below(200),
            rng.below(10_000),
            1 + rng.below(200),
        );
        raw += entry.len() as u64;
        out.write_all(entry.as_bytes()).unwrap();
    }
    out.write_all(b"]").unwrap();
    out.into_inner().unwrap().finish().unwrap().flush().unwrap();
    (raw, sample_names)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let entries = args
        .iter()
        .position(|a| a == "--entries")
        .and_then(|i| args.get(i + 1))
        .map_or(1_000_000, |n| n.parse().expect("--entries N"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enheter.json.gz");
    let t = Instant::now();
    let (raw, sample_names) = write_download(&path, entries);
    let gz = std::fs::metadata(&path).unwrap().len();
    println!(
        "wrote {entries} entries: {:.0} MB of JSON, {:.0} MB gzip'd, in {:.1?}",
        raw as f64 / 1e6,
        gz as f64 / 1e6,
        t.elapsed()
    );

    let before = rss_bytes();
    let t = Instant::now();
    let register = Register::load(&path).unwrap();
    let load = t.elapsed();
    let after = rss_bytes();
    let names: usize = sample_names.iter().map(String::len).sum::<usize>() / sample_names.len();
    println!(
        "load: {load:.2?} ({:.0} MB/s of JSON), {} organizations, {} skipped",
        raw as f64 / 1e6 / load.as_secs_f64(),
        register.len(),
        register.skipped()
    );
    println!(
        "memory: {} bytes held = {:.1} bytes per entry (names average {names} bytes); RSS grew {:.1} MB = {:.1} bytes per entry",
        register.memory_bytes(),
        register.memory_bytes() as f64 / register.len() as f64,
        after.saturating_sub(before) as f64 / 1e6,
        after.saturating_sub(before) as f64 / register.len() as f64,
    );

    // Search-box queries: what a person types on the way to a name.
    let mut rng = Rng(42);
    let mut queries: Vec<(&str, String)> = Vec::new();
    for _ in 0..300 {
        let name = &sample_names[rng.below(sample_names.len())];
        let word = name.split(' ').next().unwrap();
        let chars: Vec<char> = word.chars().collect();
        let k = (2 + rng.below(4)).min(chars.len());
        queries.push((
            "prefix",
            chars[..k].iter().collect::<String>().to_lowercase(),
        ));
        queries.push(("name", name.to_lowercase()));
        let mid = chars.len() / 2;
        queries.push((
            "substring",
            chars[mid.saturating_sub(2)..].iter().collect::<String>(),
        ));
        queries.push(("absent", format!("zq{}x", rng.below(1000))));
    }
    for q in ["a", "e", "as", "s", "ø"] {
        queries.push(("one or two letters", q.to_string()));
    }
    let mut all = Vec::new();
    let mut by_kind: std::collections::BTreeMap<&str, Vec<Duration>> = Default::default();
    // Each query three times, its fastest counted: the machine may be shared,
    // and a search that was descheduled says nothing about the search.
    for (kind, q) in &queries {
        let took = (0..3)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(register.search(q, 10));
                t.elapsed()
            })
            .min()
            .unwrap();
        all.push(took);
        by_kind.entry(kind).or_default().push(took);
    }
    all.sort();
    println!(
        "search (limit 10), {} queries: p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all[all.len() - 1]
    );
    for (kind, mut times) in by_kind {
        times.sort();
        println!(
            "  {kind:>18}: {:>4} queries, p50 {:.2?}, p99 {:.2?}, max {:.2?}",
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[times.len() - 1]
        );
    }
    let n = OrgNumber::parse(&org_numbers(81_000_000 + 500_000, 1)[0]).unwrap();
    let t = Instant::now();
    let reps = 100_000;
    for _ in 0..reps {
        std::hint::black_box(register.get(std::hint::black_box(&n)));
    }
    println!("get: {:.0?} each", t.elapsed() / reps);
}
