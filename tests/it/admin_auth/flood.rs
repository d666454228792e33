//! A flood of refused admin calls: counted whole, recorded within the gate.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_refused_calls_is_counted_whole_and_recorded_within_the_gate() {
    let es = es256();
    let Admin {
        server: s, client, ..
    } = start(&[es.jwk("es")]).await;
    let dagl = es.sign("es", &claims(DAGL, 120));
    // 600 unauthenticated calls from 8 tasks, as fast as they go.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move {
                for _ in 0..75 {
                    let e = c
                        .delegate(with_token(delegate(DAGL), Some("abc.def.ghi")))
                        .await
                        .unwrap_err();
                    assert_eq!(e.code(), Code::Unauthenticated);
                }
            })
        })
        .collect();
    // A genuine caller is served meanwhile.
    let mut c = client.clone();
    c.list_rights(with_token(ListRightsRequest {}, Some(&dagl)))
        .await
        .unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let counted = s
        .sidecar
        .telemetry
        .metrics()
        .admin_refusals(AdminKind::Delegate, Refusal::Unauthenticated);
    assert_eq!(counted, 600);
    // Keep being refused until a line says how many were not recorded (the
    // gate refills at 50 a second).
    eventually("a refusal line that counts the ones not recorded", || {
        let mut c = client.clone();
        let s = &s;
        async move {
            let _ = c.delegate(with_token(delegate(DAGL), None)).await;
            refusals(s)
                .iter()
                .any(|l| l["not_recorded_before"].as_u64().unwrap_or(0) > 0)
        }
    })
    .await;
    let lines = refusals(&s);
    let not_recorded: u64 = lines
        .iter()
        .map(|l| l["not_recorded_before"].as_u64().unwrap_or(0))
        .sum();
    let total = s
        .sidecar
        .telemetry
        .metrics()
        .admin_refusals(AdminKind::Delegate, Refusal::Unauthenticated);
    // Nobody verified: the narrow gate (a burst of 100, then 5 a second).
    assert!(
        (100..200).contains(&lines.len()),
        "{} lines: not what the anonymous gate lets through",
        lines.len()
    );
    assert!(
        lines.len() as u64 + not_recorded <= total,
        "{} lines + {not_recorded} not recorded > {total} counted",
        lines.len()
    );
    s.stop().await;
}
