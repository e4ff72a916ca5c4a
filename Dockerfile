# syntax=docker/dockerfile:1
#
# Parlor: one static binary (API, WebSocket gateway, embedded migrations, docs and demo client)
# on a distroless base with no shell.
#
#   docker build -t parlor .
#   docker run --rm -p 8080:8080 -e DB_URL=postgres://… parlor          # serve
#   docker run --rm -e DB_URL=postgres://… parlor migrate up             # any subcommand

# Go of go.mod's go line, exactly (deploy/deploy_test.go checks it): bump both together.
# Base images are pinned by tag. To pin them by digest as well, append the digest the
# registry serves for the tag (`docker buildx imagetools inspect golang:1.26.8-bookworm`,
# `… gcr.io/distroless/static-debian12:nonroot`) as `@sha256:…` to each FROM, and renew it
# when the tag moves.
ARG GO_VERSION=1.26.8

# ---- build ------------------------------------------------------------------------------
FROM golang:${GO_VERSION}-bookworm AS build
# The image's Go is the one go.mod asks for: never download another during the build.
ENV GOTOOLCHAIN=local
WORKDIR /src

# Module downloads change less often than the code: cache them in their own layer. The
# golang image keeps modules in $GOPATH/pkg/mod with GOPATH=/go (not /root/go).
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags="-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
      -o /out/parlor ./cmd/parlor

# ---- run --------------------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="parlor" \
      org.opencontainers.image.description="Real-time rooms backend: chat over WebSocket, sync, wallet and payments" \
      org.opencontainers.image.source="https://github.com/parlor-dev/parlor" \
      org.opencontainers.image.url="https://github.com/parlor-dev/parlor" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"

COPY --from=build /out/parlor /parlor

ENV APP_ADDR=:8080
# /metrics on a port of its own, for a scraper inside the container network: never publish it.
ENV APP_METRICS_ADDR=:9464
USER nonroot:nonroot
EXPOSE 8080 9464

# No curl in distroless: the binary probes its own /readyz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/parlor", "healthcheck"]

ENTRYPOINT ["/parlor"]
CMD ["serve"]
