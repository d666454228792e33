//! Every shipped decision table, run against the shipped policies and the fixture
//! data, as `tilgang test` does: with `validate`, the test of what `policies/`
//! decides. A policy change that breaks a row fails here, by design.

use tilgang::snapshot::load::{PolicySource, load_snapshot};
use tilgang::table;

use crate::util::repo;

/// The fixture data under `policies` (a directory in the repository).
fn snapshot(policies: &str) -> tilgang::snapshot::Snapshot {
    load_snapshot(
        &PolicySource::Dir(repo().join(policies)),
        &repo().join("tests/fixtures/data"),
    )
    .unwrap()
}

#[test]
fn every_shipped_table_passes() {
    let snap = snapshot("policies");
    let files = table::expand(&[repo().join("tests/tables")]).unwrap();
    assert!(files.len() >= 2, "{files:?}");
    let mut rows = Vec::new();
    for f in &files {
        rows.extend(table::read(f).unwrap());
    }
    let outcome = table::run(&snap, &rows);
    assert!(
        outcome.failures.is_empty(),
        "{}",
        outcome.failures.join("\n")
    );
    assert_eq!(outcome.passed, rows.len());
    // Both outcomes are covered, so a runner that always says one thing fails.
    assert!(rows.iter().any(|r| r.expect_allow) && rows.iter().any(|r| !r.expect_allow));
}

#[test]
fn a_wrong_expectation_is_reported_with_its_line() {
    // About the runner, not the shipped policies: the fixture ones.
    let snap = snapshot("tests/fixtures/policies");
    let rows = table::parse(
        "wrong.csv",
        "supplier,owner,scope,expect\n# comment\n\
         974760673,991825827,altinn:serviceowner/instances.write,allow\n\
         974760673,991825827,altinn:serviceowner/instances.read,deny\n",
    )
    .unwrap();
    let outcome = table::run(&snap, &rows);
    assert_eq!(outcome.passed, 0);
    assert_eq!(
        outcome.failures,
        [
            "wrong.csv:3: supplier 974760673 owner 991825827 scope \
             `altinn:serviceowner/instances.write`: expected allow, got deny (reasons: none)",
            "wrong.csv:4: supplier 974760673 owner 991825827 scope \
             `altinn:serviceowner/instances.read`: expected deny, got allow (reasons: delegated-scope)",
        ]
    );
    assert_eq!(outcome.summary(), "0 passed, 2 failed");

    // A route table: the request is printed, and a missing route is the reason.
    let rows = table::parse(
        "routes.csv",
        "method,path,supplier,owner,token_scopes,expect\n\
         GET,/storage/api/v1/instances/1/a,974760673,991825827,altinn:serviceowner/instances.read,deny\n\
         GET,/storage/api/v1/nowhere,974760673,991825827,altinn:serviceowner/instances.read,allow\n\
         DELETE,/storage/api/v1/instances/1/a,,991825827,altinn:serviceowner/instances.read,allow\n",
    )
    .unwrap();
    let outcome = table::run(&snap, &rows);
    assert_eq!(
        outcome.failures,
        [
            "routes.csv:2: GET /storage/api/v1/instances/1/a supplier 974760673 owner 991825827 \
             token scopes `altinn:serviceowner/instances.read`: expected deny, got allow \
             (reasons: delegated-scope)",
            "routes.csv:3: GET /storage/api/v1/nowhere supplier 974760673 owner 991825827 \
             token scopes `altinn:serviceowner/instances.read`: expected allow, got deny \
             (reasons: no route for `/storage/api/v1/nowhere`)",
            "routes.csv:4: DELETE /storage/api/v1/instances/1/a (the owner itself) owner 991825827 \
             token scopes `altinn:serviceowner/instances.read`: expected allow, got deny \
             (reasons: token-carries-scope)",
        ]
    );
}
