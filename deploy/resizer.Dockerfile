# resizer links libvips through cgo (govips): built against libvips-dev and
# run on Debian bookworm with the libvips runtime library, non-root.
# Build from the repository root:
#   docker build -f deploy/resizer.Dockerfile -t registry.example/resizer:v1 .
# (Not built in CI: the project's machines have no Docker; see docs/kubernetes.md.)
FROM golang:1.26-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvips-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/resizer ./cmd/resizer

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvips42 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 --no-create-home resizer
COPY --from=build /out/resizer /usr/local/bin/resizer
USER 65532:65532
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/resizer"]
