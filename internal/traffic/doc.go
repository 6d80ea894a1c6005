// Package traffic is ship's embedded weighted router: one HTTP listener per
// app and environment that splits requests between the stable and canary
// tracks exactly (1% is 1 request in every 100, not a coin flip), keeps users
// on one version when the spec asks for stickiness, retries a request on
// another instance when its connection fails and that is safe, and counts
// every request per track and version for Prometheus and for analysis.
//
// Requests are served on two paths with one behaviour: plain GET and HEAD
// requests by a byte-level HTTP/1.1 fast path (fastpath.go, http1.go,
// pool.go), everything else by net/http's server and ReverseProxy
// (proxy.go), to which the fast path hands a connection as soon as a
// request falls outside the strict subset it parses. docs/router.md has the
// design and the benchmark.
//
// It must not decide weights or start instances: the engine sets weights
// (runtime.Router), the local runtime reports ready instances (SetBackends).
package traffic
