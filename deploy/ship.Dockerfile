# ship, a static binary on distroless/static (no shell, no libc), non-root.
# Build from the repository root:
#   docker build -f deploy/ship.Dockerfile -t registry.example/ship:latest .
# (Not built in CI: the project's machines have no Docker; see docs/kubernetes.md.)
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/ship ./cmd/ship

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ship /usr/local/bin/ship
USER 65532:65532
EXPOSE 7070
ENTRYPOINT ["/usr/local/bin/ship"]
CMD ["serve", "--addr", "0.0.0.0:7070", "--data", "/data", "--apps", "/apps"]
