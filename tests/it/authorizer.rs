//! The gateway API over a real connection: decisions, batches, bad input,
//! health and reflection.

use tilgang::proto::BatchIsAuthorizedRequest;
use tonic::Code;

use crate::util::*;

#[tokio::test(flavor = "multi_thread")]
async fn decisions_carry_reasons_and_revision() {
    let s = TestServer::start().await;
    let full = s.decide(FULL_SUPPLIER, OWNER, WRITE).await;
    assert!(full.allowed);
    assert_eq!(full.reasons, ["delegated-scope"]);
    assert!(full.errors.is_empty());
    assert_eq!(full.revision, s.revision());
    assert_eq!(full.revision.len(), 16);

    let read_only = s.decide(READ_SUPPLIER, OWNER, WRITE).await;
    assert!(!read_only.allowed);
    assert!(read_only.reasons.is_empty());
    assert!(s.decide(READ_SUPPLIER, OWNER, READ).await.allowed);

    // ISO 6523 form equals the bare number.
    assert!(
        s.decide("0192:810418672", "0192:991825827", WRITE)
            .await
            .allowed
    );
    // Unknown scope: plain deny, no error.
    let unknown = s
        .decide(FULL_SUPPLIER, OWNER, "altinn:serviceowner/other")
        .await;
    assert!(!unknown.allowed && unknown.errors.is_empty());
    // No leak across owners.
    assert!(!s.decide(FULL_SUPPLIER, OTHER_OWNER, READ).await.allowed);
    // Self-delegation is forbidden by policy, and the forbid is the reason.
    let own = s.decide(OWNER, OWNER, READ).await;
    assert!(!own.allowed);
    assert_eq!(own.reasons, ["no-self-delegation"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_input_is_invalid_argument_naming_the_field() {
    let s = TestServer::start().await;
    let mut c = s.gateway().await;
    let cases = [
        (req("81041867", OWNER, READ), "`supplier`"),
        (req("810418673", OWNER, READ), "`supplier`"),
        (req(FULL_SUPPLIER, "", READ), "`owner`"),
        (req(FULL_SUPPLIER, "0193:991825827", READ), "`owner`"),
        (req(FULL_SUPPLIER, OWNER, ""), "`scope`"),
        (req(FULL_SUPPLIER, OWNER, "has space"), "`scope`"),
    ];
    for (r, field) in cases {
        let e = c.is_authorized(r.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{r:?}");
        assert!(e.message().starts_with(field), "{r:?}: {}", e.message());
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_keeps_order_and_limits_size() {
    let s = TestServer::start().await;
    let mut c = s.gateway().await;
    let requests = vec![
        req(FULL_SUPPLIER, OWNER, WRITE),
        req(READ_SUPPLIER, OWNER, WRITE),
        req(READ_SUPPLIER, OWNER, READ),
        req(NEW_SUPPLIER, OWNER, READ),
        req(FULL_SUPPLIER, OWNER, READ),
    ];
    let r = c
        .batch_is_authorized(BatchIsAuthorizedRequest { requests })
        .await
        .unwrap()
        .into_inner();
    let allowed: Vec<bool> = r.responses.iter().map(|r| r.allowed).collect();
    assert_eq!(allowed, [true, false, true, false, true]);
    let revision = &r.responses[0].revision;
    assert!(r.responses.iter().all(|x| &x.revision == revision));

    let bad = vec![
        req(FULL_SUPPLIER, OWNER, READ),
        req(FULL_SUPPLIER, "x", READ),
    ];
    let e = c
        .batch_is_authorized(BatchIsAuthorizedRequest { requests: bad })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("`requests[1].owner`"),
        "{}",
        e.message()
    );

    let too_many = vec![req(FULL_SUPPLIER, OWNER, READ); 1001];
    let e = c
        .batch_is_authorized(BatchIsAuthorizedRequest { requests: too_many })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("`requests`") && e.message().contains("1000"));

    let max = vec![req(FULL_SUPPLIER, OWNER, READ); 1000];
    let r = c
        .batch_is_authorized(BatchIsAuthorizedRequest { requests: max })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.responses.len(), 1000);
    assert!(r.responses.iter().all(|x| x.allowed));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let s = TestServer::start().await;
    for (addr, service) in [
        (s.sidecar.gateway_addr, "tilgang.v1.Authorizer"),
        (s.sidecar.admin_addr, "tilgang.v1.Delegations"),
    ] {
        let url = format!("http://{addr}");
        let channel = tonic::transport::Channel::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel.clone());
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32);

        let mut refl = ServerReflectionClient::new(channel);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = refl
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            panic!("unexpected reflection response");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains(&service.to_string()), "{names:?}");
        assert!(
            names.contains(&"grpc.health.v1.Health".to_string()),
            "{names:?}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_is_not_on_the_gateway_listener() {
    let s = TestServer::start().await;
    let mut wrong = tilgang::proto::delegations_client::DelegationsClient::connect(format!(
        "http://{}",
        s.sidecar.gateway_addr
    ))
    .await
    .unwrap();
    let e = wrong
        .list_rights(tilgang::proto::ListRightsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_evaluation_error_is_a_deny_even_when_a_permit_matches() {
    let s = TestServer::start().await;
    // Valid against the schema, but overflows at evaluation time.
    std::fs::write(
        s.work.policies().join("overflow.cedar"),
        "@id(\"overflows\")\nforbid (principal, action, resource)\nwhen { 9223372036854775807 + 1 < 0 };\n",
    )
    .unwrap();
    eventually("the erroring policy to load", || async {
        !s.decide(FULL_SUPPLIER, OWNER, WRITE)
            .await
            .errors
            .is_empty()
    })
    .await;
    let r = s.decide(FULL_SUPPLIER, OWNER, WRITE).await;
    assert!(!r.allowed, "fail closed: {r:?}");
    assert!(r.errors.iter().any(|e| e.contains("overflows")), "{r:?}");
    assert!(
        r.reasons.is_empty(),
        "no permit is reported as the reason for a deny: {r:?}"
    );
    s.stop().await;
}
