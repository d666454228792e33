# syntax=docker/dockerfile:1
#
# tilgang in a container: built with cargo on Debian bookworm, run on
# distroless (glibc, CA certificates, no shell, no package manager) as the
# non-root user `nonroot` (65532).
#
#   docker build -t tilgang .
#   docker run --rm -p 127.0.0.1:50051:50051 -p 127.0.0.1:9464:9464 tilgang
#
# What runs (the CMD below; every flag can also be set by its TILGANG_<FLAG>
# variable, and a flag given in `docker run … tilgang serve …` replaces the CMD):
#
#   - gateway gRPC (Authorizer, Envoy ext_authz, grpc.health.v1): 0.0.0.0:50051
#   - Prometheus metrics, GET /metrics: 0.0.0.0:9464
#   - admin gRPC: 127.0.0.1:50052, inside the container only. tilgang refuses a
#     non-loopback admin address without admin authentication; to serve it
#     beyond the container, add --admin-jwks (with --admin-jwt-audience) or
#     --admin-client-identities and --admin-listen 0.0.0.0:50052, and publish
#     it only to the network the administrators use. Inside the container the
#     same binary is the admin client: `docker exec CONTAINER tilgang rights`.
#   - policies: /etc/tilgang/policies, copied from policies/ at build time and
#     hot-reloaded; mount a directory there to serve your own.
#   - data (delegations/, roles.json, audit.jsonl): the volume /var/lib/tilgang,
#     owned by nonroot. A bind mount there must be writable for uid 65532.
#
# No HEALTHCHECK: distroless has no shell and no gRPC health client. Probe the
# gateway's grpc.health.v1 service instead (Kubernetes: `grpc: { port: 50051 }`
# in the liveness/readiness probe); deploy/compose.yaml shows a compose check.
# On SIGTERM tilgang reports NOT_SERVING and drains for --shutdown-grace (10 s):
# give the container longer than that to stop.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target/ are BuildKit caches; the binary is copied out of the
# cached target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/tilgang /out/usr/local/bin/tilgang \
    && install -d -m 0755 /out/etc/tilgang \
    && cp -R policies /out/etc/tilgang/policies \
    && install -d -m 0750 /out/var/lib/tilgang

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/tilgang /usr/local/bin/tilgang
# Owned by root: tilgang reads its policies and never writes them.
COPY --from=build /out/etc/tilgang /etc/tilgang
# Owned by nonroot, so that a new named volume mounted here starts writable.
COPY --from=build --chown=65532:65532 /out/var/lib/tilgang /var/lib/tilgang
USER 65532:65532
VOLUME ["/var/lib/tilgang"]
# gateway gRPC, metrics (the admin listener stays on loopback: not exposed)
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/tilgang"]
CMD ["serve", \
     "--policies", "/etc/tilgang/policies", \
     "--data", "/var/lib/tilgang", \
     "--listen", "0.0.0.0:50051", \
     "--admin-listen", "127.0.0.1:50052", \
     "--metrics-listen", "0.0.0.0:9464", \
     "--web-listen", "off"]
