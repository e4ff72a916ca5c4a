# syntax=docker/dockerfile:1
#
# Parlor: one static binary (API, WebSocket gateway, embedded migrations, docs and demo client)
# on a distroless base with no shell.
#
#   docker build -t parlor .
#   docker run --rm -p 8080:8080 -e DB_URL=postgres://… parlor          # serve
#   docker run --rm -e DB_URL=postgres://… parlor migrate up             # any subcommand

ARG GO_VERSION=1.26

# ---- build ------------------------------------------------------------------------------
FROM golang:${GO_VERSION}-bookworm AS build
# The image pins GOTOOLCHAIN=local; let go.mod's go line fetch a newer patch release if this
# image is older than it.
ENV GOTOOLCHAIN=auto
WORKDIR /src

# Module downloads change less often than the code: cache them in their own layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod \
    go mod download

COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN --mount=type=cache,target=/root/go/pkg/mod \
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
