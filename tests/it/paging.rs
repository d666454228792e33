//! `ListDelegations` a page at a time (AIP-158), over a real admin listener:
//! every delegation exactly once and in order at any page size, the default
//! and maximum sizes, the byte budget, refused sizes and tokens, writes
//! between pages, the supplier filter across owners, and `tilgang
//! delegations` walking every page.

use std::collections::BTreeSet;
use std::process::Command;

use tilgang::grpc::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_BYTES, MAX_PAGE_SIZE};
use tilgang::proto::delegations_client::DelegationsClient;
use tilgang::proto::{
    DelegateRequest, ListDelegationsRequest, ListDelegationsResponse, RevokeRequest,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::util::*;

/// A server whose `OWNER` (for which `DAGL` may write) has delegated
/// `instances-read` to each of `suppliers`, and nothing else.
async fn server_with(suppliers: &[String]) -> TestServer {
    let work = Workdir::new();
    write_owner(&work, OWNER, suppliers, "instances-read");
    TestServer::start_in(work, |_| {}).await
}

fn request(owner: &str, supplier: &str, page_size: i32, token: &str) -> ListDelegationsRequest {
    ListDelegationsRequest {
        owner: owner.into(),
        supplier: supplier.into(),
        page_size,
        page_token: token.into(),
    }
}

async fn page(
    a: &mut DelegationsClient<Channel>,
    req: ListDelegationsRequest,
) -> ListDelegationsResponse {
    a.list_delegations(req).await.unwrap().into_inner()
}

type Pair = (String, String);

/// Every page of a listing, as (owner, supplier) pairs per page; checks
/// that only the last page lacks a token.
async fn walk(
    a: &mut DelegationsClient<Channel>,
    owner: &str,
    supplier: &str,
    size: i32,
) -> Vec<Vec<Pair>> {
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let r = page(a, request(owner, supplier, size, &token)).await;
        pages.push(
            r.delegations
                .into_iter()
                .map(|d| (d.owner, d.supplier))
                .collect(),
        );
        if r.next_page_token.is_empty() {
            return pages;
        }
        assert!(pages.len() < 10_000, "the walk does not end");
        token = r.next_page_token;
    }
}

fn suppliers_of(pages: &[Vec<Pair>]) -> Vec<String> {
    pages.iter().flatten().map(|(_, s)| s.clone()).collect()
}

fn lens(pages: &[Vec<Pair>]) -> Vec<usize> {
    pages.iter().map(Vec::len).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_delegation_once_and_in_order_at_any_page_size() {
    let mut suppliers = org_numbers(50_000_000, 2500);
    // Written out of order; listed in order.
    suppliers.reverse();
    let s = server_with(&suppliers).await;
    suppliers.sort();
    let mut a = s.admin().await;

    // 0 is the default, 100: 25 full pages, and no empty page after them.
    let pages = walk(&mut a, OWNER, "", 0).await;
    assert_eq!(lens(&pages), vec![DEFAULT_PAGE_SIZE; 25]);
    assert_eq!(suppliers_of(&pages), suppliers);
    assert!(pages.iter().flatten().all(|(o, _)| o == OWNER));

    // The maximum is 1000; more is lowered to it, not refused.
    for size in [1000, 1001, 2500, i32::MAX] {
        let pages = walk(&mut a, OWNER, "", size).await;
        assert_eq!(lens(&pages), [MAX_PAGE_SIZE, MAX_PAGE_SIZE, 500], "{size}");
        assert_eq!(suppliers_of(&pages), suppliers, "{size}");
    }
    // Small pages, and one that ends just before the end.
    let pages = walk(&mut a, OWNER, "", 7).await;
    assert_eq!(pages.len(), 358);
    assert_eq!(pages[357].len(), 1);
    assert_eq!(suppliers_of(&pages), suppliers);
    let pages = walk(&mut a, OWNER, "", 833).await;
    assert_eq!(lens(&pages), [833, 833, 833, 1]);
    assert_eq!(suppliers_of(&pages), suppliers);

    // The page size may change between pages; the token stays good.
    let first = page(&mut a, request(OWNER, "", 3, "")).await;
    let second = page(&mut a, request(OWNER, "", 5, &first.next_page_token)).await;
    let got: Vec<&str> = first
        .delegations
        .iter()
        .chain(&second.delegations)
        .map(|d| d.supplier.as_str())
        .collect();
    assert_eq!(got, suppliers[..8]);

    // An owner with nothing: one empty page, no token.
    let r = page(&mut a, request(OTHER_OWNER, NEW_SUPPLIER, 0, "")).await;
    assert!(r.delegations.is_empty() && r.next_page_token.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_page_sizes_and_tokens_are_invalid_argument_naming_the_field() {
    let s = server_with(&org_numbers(50_000_000, 30)).await;
    let mut a = s.admin().await;
    for size in [-1, -1000, i32::MIN] {
        let e = a
            .list_delegations(request(OWNER, "", size, ""))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{size}");
        assert!(
            e.message().starts_with(&format!("`page_size` is {size}")),
            "{}",
            e.message()
        );
    }

    let token = page(&mut a, request(OWNER, "", 10, ""))
        .await
        .next_page_token;
    assert_eq!(token.len(), 36, "{token}");
    let garbled = [
        token[..35].to_string(),
        format!("{token}A"),
        format!("{token}="),
        token.replace(|c: char| c.is_ascii_alphabetic(), "!"),
        "not a token".to_string(),
        // base64url of something that is not a token: a filter, a position.
        "OTkxODI1ODI3".to_string(),
        "A".repeat(36),
        format!("{}…", "9".repeat(100)),
    ];
    for bad in garbled {
        let e = a
            .list_delegations(request(OWNER, "", 10, &bad))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        assert!(
            e.message().starts_with("`page_token` `")
                && e.message().contains("is not a page token"),
            "{bad}: {}",
            e.message()
        );
        assert!(e.message().len() < 300, "{}", e.message());
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_works_only_with_the_filters_it_was_given_for() {
    let suppliers = org_numbers(50_000_000, 30);
    let s = server_with(&suppliers).await;
    let mut a = s.admin().await;
    let token = page(&mut a, request(OWNER, "", 10, ""))
        .await
        .next_page_token;
    let supplier = suppliers[20].as_str();
    for (owner, supplier) in [
        (OTHER_OWNER, ""),
        ("", ""),
        ("", supplier),
        (OWNER, supplier),
    ] {
        let e = a
            .list_delegations(request(owner, supplier, 10, &token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{owner:?} {supplier:?}");
        assert!(
            e.message()
                .starts_with("`page_token` was given for other filters"),
            "{}",
            e.message()
        );
    }
    // The same filter spelled with `0192:` is the same filter.
    let next = page(&mut a, request(&format!("0192:{OWNER}"), "", 10, &token)).await;
    let got: Vec<&str> = next
        .delegations
        .iter()
        .map(|d| d.supplier.as_str())
        .collect();
    assert_eq!(got, suppliers[10..20]);

    // Tokens of the other filters do not cross either.
    let by_supplier = page(&mut a, request("", supplier, 1, "")).await;
    assert_eq!(by_supplier.delegations.len(), 1);
    // One delegation matches, so the first page was the last.
    assert!(by_supplier.next_page_token.is_empty());
    let all = page(&mut a, request("", "", 1, "")).await;
    let e = a
        .list_delegations(request(OWNER, "", 1, &all.next_page_token))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    s.stop().await;
}

/// The token is a position, not an offset: delegations added and removed
/// between pages, before and after it and at it, neither make the walk skip
/// nor repeat any delegation that exists throughout.
#[tokio::test(flavor = "multi_thread")]
async fn writes_between_pages_neither_skip_nor_repeat_the_others() {
    // Every other org number is delegated, so there are gaps to add into.
    let s_all = org_numbers(50_000_000, 1000);
    let listed: Vec<String> = s_all.iter().step_by(2).cloned().collect();
    let s = server_with(&listed).await;
    let mut a = s.admin().await;
    let delegate = |supplier: &str| DelegateRequest {
        owner: OWNER.into(),
        supplier: supplier.into(),
        rights: vec!["instances-read".into()],
        actor: DAGL.into(),
    };
    let revoke = |supplier: &str| RevokeRequest {
        owner: OWNER.into(),
        supplier: supplier.into(),
        rights: vec![],
        actor: DAGL.into(),
    };

    let first = page(&mut a, request(OWNER, "", 100, "")).await;
    let mut got: Vec<String> = first
        .delegations
        .iter()
        .map(|d| d.supplier.clone())
        .collect();
    assert_eq!(got, listed[..100]);
    let cursor = &listed[99];
    assert_eq!(cursor, &s_all[198]);

    let added_before = &s_all[1];
    let added_after = &s_all[201];
    let removed_returned = &s_all[2];
    let removed_ahead = &s_all[400];
    a.delegate(delegate(added_before)).await.unwrap();
    a.delegate(delegate(added_after)).await.unwrap();
    // The very delegation the token points at goes away.
    a.revoke(revoke(cursor)).await.unwrap();
    a.revoke(revoke(removed_returned)).await.unwrap();
    a.revoke(revoke(removed_ahead)).await.unwrap();

    let mut token = first.next_page_token;
    let mut round = 0;
    while !token.is_empty() {
        round += 1;
        let r = page(&mut a, request(OWNER, "", 100, &token)).await;
        got.extend(r.delegations.into_iter().map(|d| d.supplier));
        // More writes on later pages: one ahead of the walk, one behind it.
        if round == 2 {
            a.delegate(delegate(&s_all[799])).await.unwrap();
            a.revoke(revoke(&s_all[600])).await.unwrap();
        }
        token = r.next_page_token;
    }

    // In order, each once.
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "out of order or repeated"
    );
    let got_set: BTreeSet<&String> = got.iter().collect();
    let throughout: Vec<&String> = listed
        .iter()
        .filter(|s| ![removed_ahead, &s_all[600]].contains(s))
        .collect();
    for s in &throughout {
        assert!(got_set.contains(s), "{s} was skipped");
    }
    assert!(got_set.contains(added_after));
    assert!(got_set.contains(&s_all[799]));
    assert!(!got_set.contains(added_before), "behind the walk");
    assert!(!got_set.contains(removed_ahead));
    assert!(!got_set.contains(&s_all[600]));
    assert_eq!(got.len(), throughout.len() + 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_supplier_filter_pages_across_owners() {
    let work = Workdir::new();
    let owners = org_numbers(40_000_000, 40);
    // Every owner delegates to two others, and most also to `shared`.
    let others = org_numbers(60_000_000, 2);
    let shared = org_numbers(50_000_000, 1).pop().unwrap();
    let mut want = Vec::new();
    for (i, owner) in owners.iter().enumerate() {
        // Every third owner has not delegated to `shared`.
        let mut suppliers = others.clone();
        if i % 3 != 0 {
            suppliers.push(shared.clone());
            want.push((owner.clone(), shared.clone()));
        }
        write_owner(&work, owner, &suppliers, "instances-read");
    }
    let s = TestServer::start_in(work, |_| {}).await;
    let mut a = s.admin().await;

    for size in [1, 4, 26, 27, 1000] {
        let pages = walk(&mut a, "", &shared, size).await;
        let got: Vec<Pair> = pages.iter().flatten().cloned().collect();
        assert_eq!(got, want, "{size}");
        // Only the last page is short.
        let n = usize::try_from(size).unwrap().min(want.len());
        let lens = lens(&pages);
        assert!(
            lens[..lens.len() - 1].iter().all(|l| *l == n),
            "{size}: {lens:?}"
        );
    }

    // Without filters, paged or whole, everything in (owner, supplier) order:
    // the three fixture delegations and these.
    let whole: Vec<Pair> = walk(&mut a, "", "", 1000).await.concat();
    assert_eq!(whole.len(), 3 + 40 * 2 + want.len());
    let mut sorted = whole.clone();
    sorted.sort();
    assert_eq!(whole, sorted);
    for size in [1, 9, 100] {
        assert_eq!(walk(&mut a, "", "", size).await.concat(), whole, "{size}");
    }
    // Both filters: the one delegation, or none.
    let one = walk(&mut a, &owners[1], &shared, 1).await;
    assert_eq!(one, [vec![(owners[1].clone(), shared.clone())]]);
    let none = walk(&mut a, &owners[0], &shared, 1).await;
    assert_eq!(none, [vec![]]);
    s.stop().await;
}

/// A catalogue whose right gives many long scopes: a page stops at the byte
/// budget before it reaches its size, and the walk still returns everything.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_stops_at_the_byte_budget() {
    use prost::Message;
    let work = Workdir::new();
    let rights_path = work.policies().join("rights.json");
    let mut catalogue: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rights_path).unwrap()).unwrap();
    let scopes: Vec<String> = (0..50).map(|i| format!("altinn:test/{i:0>244}")).collect();
    catalogue["rights"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({ "id": "wide", "name": "Many long scopes", "scopes": scopes }));
    std::fs::write(&rights_path, catalogue.to_string()).unwrap();
    let suppliers = org_numbers(50_000_000, 300);
    write_owner(&work, OWNER, &suppliers, "wide");
    let s = TestServer::start_in(work, |_| {}).await;
    let mut a = s.admin().await;

    let mut token = String::new();
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let r = page(&mut a, request(OWNER, "", 1000, &token)).await;
        let bytes: usize = r
            .delegations
            .iter()
            .map(|d| prost::encoding::message::encoded_len(1, d))
            .sum();
        assert!(bytes <= MAX_PAGE_BYTES, "{bytes}");
        assert!(r.encoded_len() < MAX_PAGE_BYTES + 64);
        sizes.push(r.delegations.len());
        got.extend(r.delegations.into_iter().map(|d| d.supplier));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    // 13,038 bytes a delegation: 80 to a page, though 1000 were asked for.
    assert_eq!(sizes, [80, 80, 80, 60]);
    assert_eq!(got, suppliers);
    s.stop().await;
}

fn tilgang(admin: &str, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_tilgang"))
        .env_remove("RUST_LOG")
        .env("TILGANG_ADMIN_ADDR", admin)
        .arg("delegations")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_prints_every_page() {
    let suppliers = org_numbers(50_000_000, 2500);
    let s = server_with(&suppliers).await;
    let addr = s.sidecar.admin_addr.unwrap().to_string();
    let run = |args: &'static [&'static str]| {
        let addr = addr.clone();
        async move {
            tokio::task::spawn_blocking(move || tilgang(&addr, args))
                .await
                .unwrap()
        }
    };

    // The default asks for the maximum: three pages.
    let (code, table, err) = run(&["--owner", OWNER]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2501);
    assert!(lines[0].starts_with("OWNER") && lines[0].contains("CREATED_AT"));
    let listed: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(listed, suppliers);
    // Smaller pages print the same table.
    let (code, small, err) = run(&["--owner", OWNER, "--page-size", "7"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(small, table);

    let (code, json, err) = run(&["--owner", OWNER, "--json", "--page-size", "300"]).await;
    assert_eq!(code, 0, "{err}");
    let v: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let listed: Vec<&str> = v.iter().map(|d| d["supplier"].as_str().unwrap()).collect();
    assert_eq!(listed, suppliers);
    assert_eq!(v[0]["rights"], serde_json::json!(["instances-read"]));

    for bad in ["0", "-1", "x"] {
        let (code, _, err) = tilgang(&addr, &[&format!("--page-size={bad}")]);
        assert_eq!(code, 2, "{bad}");
        assert!(err.contains("--page-size"), "{bad}: {err}");
    }
    s.stop().await;
}
