use super::*;

#[test]
fn latency_lands_in_its_bucket_and_count_is_the_bucket_total() {
    let h = LatencyHistogram::default();
    h.observe(Duration::from_micros(3)); // <= 5 µs
    h.observe(Duration::from_micros(5)); // <= 5 µs (bounds are inclusive)
    h.observe(Duration::from_micros(40)); // <= 50 µs
    h.observe(Duration::from_secs(1)); // over every bound
    let (sum, count, buckets) = h.read();
    assert_eq!(count, 4);
    assert_eq!(buckets[0], (5e-6, 2));
    assert_eq!(buckets[3], (5e-5, 1));
    assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
    assert!((sum - 1.000048).abs() < 1e-9, "{sum}");
}

#[test]
fn a_revision_ages_from_when_it_was_first_reported() {
    let m = Metrics::new();
    let t0 = UNIX_EPOCH + Duration::from_secs(1000);
    m.published_at("a", t0);
    m.published_at("a", t0 + Duration::from_secs(5));
    assert_eq!(m.published.lock().unwrap().at, Some(t0));
    m.published_at("b", t0 + Duration::from_secs(7));
    let p = m.published.lock().unwrap();
    assert_eq!(
        (p.revision.as_str(), p.at),
        ("b", Some(t0 + Duration::from_secs(7)))
    );
}

#[test]
fn label_enums_index_their_arrays_in_order() {
    for (i, a) in Api::ALL.iter().enumerate() {
        assert_eq!(a.index(), i);
    }
    for (i, r) in AdminResult::ALL.iter().enumerate() {
        assert_eq!(r.index(), i);
    }
    assert_eq!(Refusal::COUNT, 5);
    assert_eq!(AdminKind::COUNT, 5);
    assert!(
        AdminKind::WRITES
            .iter()
            .enumerate()
            .all(|(i, k)| k.index() == i)
    );
}
