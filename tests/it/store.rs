//! The store called directly, offline (no server, no watcher): each refusal is
//! the `StoreError` variant that says what went wrong, with its data, and
//! `grpc::status` gives it the documented code. A `roles.json` that does not
//! load refuses every write.

use std::sync::Arc;
use std::time::Duration;

use tilgang::grpc::status::store_error;
use tilgang::ids::{OrgNumber, PersonId, RightId, UndoToken};
use tilgang::snapshot::SnapshotStore;
use tilgang::snapshot::load::{LoadError, PolicySource, load_snapshot};
use tilgang::store::{DelegationStore, FileStore, StoreError};
use tonic::Code;

use crate::util::*;

/// A store over a fresh work dir, with the snapshot store it publishes to.
fn offline(undo_window: Duration) -> (Workdir, Arc<SnapshotStore>, DelegationStore) {
    let work = Workdir::new();
    let src = PolicySource::Dir(work.policies());
    let snaps = Arc::new(SnapshotStore::new(
        load_snapshot(&src, &work.data()).unwrap(),
    ));
    let store =
        DelegationStore::new(FileStore::open(snaps.clone(), work.data(), undo_window).unwrap());
    (work, snaps, store)
}

fn org(s: &str) -> OrgNumber {
    OrgNumber::parse(s).unwrap()
}
fn person(s: &str) -> PersonId {
    PersonId::parse(s).unwrap()
}
fn rights(ids: &[&str]) -> Vec<RightId> {
    ids.iter().map(|r| RightId::parse(r).unwrap()).collect()
}

#[test]
fn refusals_say_what_went_wrong() {
    let (work, _snaps, store) = offline(Duration::from_secs(3600));
    let (owner, new, dagl) = (org(OWNER), org(NEW_SUPPLIER), person(DAGL));
    let read = rights(&["instances-read"]);

    let e = store.delegate(owner, owner, &read, &dagl).unwrap_err();
    assert!(
        matches!(e, StoreError::SameParty { org } if org == owner),
        "{e:?}"
    );
    let e = store.delegate(owner, new, &[], &dagl).unwrap_err();
    assert!(matches!(&e, StoreError::NoRights { known } if known.contains("`instances-read`")));
    let e = store
        .delegate(owner, new, &rights(&["instances-admin"]), &dagl)
        .unwrap_err();
    let StoreError::UnknownRight { right, known } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(right.as_str(), "instances-admin");
    assert_eq!(known, "`instances-full`, `instances-read`");
    assert_eq!(store_error(e).code(), Code::InvalidArgument);

    let regn = person("03038712345");
    let e = store
        .delegate(org(OTHER_OWNER), new, &read, &regn)
        .unwrap_err();
    let StoreError::Forbidden {
        actor,
        owner: refused_for,
        required,
        held,
        policy_errors,
    } = &e
    else {
        panic!("{e:?}");
    };
    assert_eq!((actor, *refused_for), (&regn, org(OTHER_OWNER)));
    assert!(required.contains("APIADM"), "{required}");
    assert_eq!(held.iter().collect::<Vec<_>>(), ["REGN"]);
    assert!(policy_errors.is_empty());
    // The message README shows.
    assert_eq!(
        e.to_string(),
        "actor `03038712345` may not administer delegations for 983887457: missing role: \
         one of the key roles DAGL, LEDE, INNH, DTPR, DTSO, KOMP, BEST, BOBE, or APIADM for \
         983887457 (roles held for 983887457: REGN)"
    );
    assert_eq!(store_error(e).code(), Code::PermissionDenied);

    let e = store.revoke(owner, new, &[], &dagl).unwrap_err();
    assert!(
        matches!(e, StoreError::NothingDelegated { owner: o, supplier: s } if o == owner && s == new)
    );
    let e = store
        .revoke(
            owner,
            org(READ_SUPPLIER),
            &rights(&["instances-full"]),
            &dagl,
        )
        .unwrap_err();
    let StoreError::NotDelegated { missing, held, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(
        missing.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        ["instances-full"]
    );
    assert_eq!(
        held.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        ["instances-read"]
    );
    assert_eq!(store_error(e).code(), Code::NotFound);

    // Undo: unknown, then used.
    let unknown = UndoToken::parse_exact(&"0".repeat(32)).unwrap();
    let e = store.undo(&unknown, &dagl).unwrap_err();
    assert!(
        matches!(&e, StoreError::UnknownToken { token, actor } if *token == unknown && *actor == dagl)
    );
    let token = store
        .revoke(owner, org(READ_SUPPLIER), &[], &dagl)
        .unwrap()
        .value
        .undo_token;
    store.undo(&token, &dagl).unwrap();
    let e = store.undo(&token, &dagl).unwrap_err();
    assert!(
        matches!(&e, StoreError::TokenUsed { by, .. } if by == DAGL),
        "{e:?}"
    );
    assert_eq!(store_error(e).code(), Code::FailedPrecondition);

    // A broken owner file is left untouched.
    std::fs::write(work.owner_file(OWNER), "[ broken").unwrap();
    let e = store.delegate(owner, new, &read, &dagl).unwrap_err();
    assert!(matches!(e, StoreError::CorruptFile(_)), "{e:?}");
    assert_eq!(store_error(e).code(), Code::FailedPrecondition);
    assert_eq!(
        std::fs::read_to_string(work.owner_file(OWNER)).unwrap(),
        "[ broken"
    );
}

#[test]
fn an_expired_token_is_told_as_expired_to_the_owners_admin() {
    let (_work, _snaps, store) = offline(Duration::ZERO);
    let (owner, dagl) = (org(OWNER), person(DAGL));
    let token = store
        .revoke(owner, org(FULL_SUPPLIER), &[], &dagl)
        .unwrap()
        .value
        .undo_token;
    let e = store.undo(&token, &dagl).unwrap_err();
    assert!(matches!(e, StoreError::TokenExpired { .. }), "{e:?}");
    let e = store.undo(&token, &person(OTHER_ADMIN)).unwrap_err();
    assert!(matches!(e, StoreError::UnknownToken { .. }), "{e:?}");
}

#[test]
fn a_roles_file_that_does_not_load_refuses_every_write() {
    let (_work, snaps, store) = offline(Duration::from_secs(3600));
    let (owner, dagl) = (org(OWNER), person(DAGL));
    let token = store
        .revoke(owner, org(READ_SUPPLIER), &[], &dagl)
        .unwrap()
        .value
        .undo_token;
    let good = snaps.load();
    let problem = Arc::new(LoadError {
        location: "/srv/data/roles.json:3:1".into(),
        message: "expected `,` or `]`".into(),
    });
    snaps.lock().publish(good.with_roles_problem(problem));

    let refusals = [
        store
            .delegate(
                owner,
                org(NEW_SUPPLIER),
                &rights(&["instances-read"]),
                &dagl,
            )
            .map(drop),
        store
            .revoke(owner, org(FULL_SUPPLIER), &[], &dagl)
            .map(drop),
        store.undo(&token, &dagl).map(drop),
        // Also for a token that does not exist: the same answer as for one
        // that does, so a broken roles.json does not open a probe.
        store
            .undo(&UndoToken::parse_exact(&"0".repeat(32)).unwrap(), &dagl)
            .map(drop),
    ];
    for r in refusals {
        let e = r.unwrap_err();
        assert!(matches!(e, StoreError::RolesInvalid(_)), "{e:?}");
        let status = store_error(e);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(
            status.message(),
            "admin writes are refused until `roles.json` loads again: \
             /srv/data/roles.json:3:1: expected `,` or `]`"
        );
    }
    // Nothing was written; the decisions stand.
    assert!(
        store
            .snapshot()
            .delegation(&owner, &org(FULL_SUPPLIER))
            .is_some()
    );

    // Loaded again: writes resume.
    let roles = good.roles.clone();
    let fixed = snaps.load().with_roles(roles);
    snaps.lock().publish(fixed);
    store.undo(&token, &dagl).unwrap();
}
