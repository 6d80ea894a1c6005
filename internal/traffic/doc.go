// Package traffic is ship's embedded weighted router: one HTTP listener per
// app and environment that splits requests between the stable and canary
// tracks exactly (1% is 1 request in every 100, not a coin flip), keeps users
// on one version when the spec asks for stickiness, retries a request on
// another instance when its connection fails and that is safe, and counts
// every request per track and version for Prometheus and for analysis.
//
// It must not decide weights or start instances: the engine sets weights
// (runtime.Router), the local runtime reports ready instances (SetBackends).
package traffic
