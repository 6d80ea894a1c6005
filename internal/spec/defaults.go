package spec

import (
	"time"

	"github.com/shipteam/ship/internal/release"
)

// The defaults, in one place; docs/spec.md lists the same values.
const (
	DefaultListen       = "127.0.0.1"
	DefaultHealthPath   = "/healthz"
	DefaultReplicas     = 1
	DefaultEnv          = "production"
	DefaultStepPause    = Duration(30 * time.Second)
	DefaultStepTimeout  = Duration(5 * time.Minute)
	DefaultMaxErrorRate = 0.05
	DefaultMinRequests  = 20
	DefaultInterval     = Duration(250 * time.Millisecond)
	DefaultStartTimeout = Duration(30 * time.Second)
	DefaultStopGrace    = Duration(10 * time.Second)
	DefaultNamespace    = "ship-{{.Env}}"
)

// The default Prometheus queries (analysis.prometheus) follow a common
// convention: the app exports http_requests_total with a "code" label and
// the histogram http_request_duration_seconds, and Prometheus scrapes its
// pods with the usual Kubernetes relabelling (labelmap of
// __meta_kubernetes_pod_label_(.+), plus namespace), which turns ship's pod
// labels ship.dev/app, ship.dev/env and ship.dev/track into ship_dev_app,
// ship_dev_env and ship_dev_track. docs/kubernetes.md shows that scrape
// config.
const (
	promSelector        = `namespace="{{.Namespace}}",ship_dev_app="{{.App}}",ship_dev_env="{{.Env}}",ship_dev_track="{{.Track}}"`
	DefaultPromRequests = `sum(http_requests_total{` + promSelector + `})`
	DefaultPromErrors   = `sum(http_requests_total{` + promSelector + `,code=~"5.."})`
	DefaultPromLatency  = `sum by (le) (http_request_duration_seconds_bucket{` + promSelector + `})`
)

// DefaultSteps returns the default canary plan: 1, 10, 50 percent with a
// 30s pause each, then 100 with none. Each call returns a new slice.
func DefaultSteps() []Step {
	return []Step{
		{Weight: 1 * 100, Pause: DefaultStepPause},
		{Weight: 10 * 100, Pause: DefaultStepPause},
		{Weight: 50 * 100, Pause: DefaultStepPause},
		{Weight: 100 * 100, Pause: 0},
	}
}

// withDefaults is the starting value the YAML is decoded over: a field the
// file leaves out keeps its default, a field the file sets (even to 0) wins.
func withDefaults() App {
	return App{
		Kind:         KindWeb,
		Listen:       DefaultListen,
		HealthPath:   DefaultHealthPath,
		Replicas:     DefaultReplicas,
		Environments: []string{DefaultEnv},
		Strategy: Strategy{
			Type:        StrategyCanary,
			Steps:       DefaultSteps(),
			StepTimeout: DefaultStepTimeout,
		},
		Analysis: Analysis{
			MaxErrorRate: DefaultMaxErrorRate,
			MinRequests:  DefaultMinRequests,
			Interval:     DefaultInterval,
		},
		Run:       Run{StartTimeout: DefaultStartTimeout, StopGrace: DefaultStopGrace},
		Kube:      Kube{Namespace: DefaultNamespace},
		defaulted: true,
	}
}

// defaultPause is the pause of step i when the file gives none: the last
// step at 100% has nothing left to watch, so it does not wait.
func defaultPause(steps []Step, i int) Duration {
	if i == len(steps)-1 && steps[i].Weight == release.Full {
		return 0
	}
	return DefaultStepPause
}

// SetDefaults fills the zero-valued fields of an App built in Go (tests,
// other front ends) with the defaults. Unlike YAML loading it cannot tell
// "unset" from a deliberate zero, so Replicas 0, MaxErrorRate 0 and
// StopGrace 0 become the defaults; set those after calling it (NewCatalog
// then keeps them). Step pauses are left as given.
func (a *App) SetDefaults() {
	defer func() { a.defaulted = true }()
	d := withDefaults()
	if a.Kind == "" {
		a.Kind = d.Kind
	}
	if a.Listen == "" {
		a.Listen = d.Listen
	}
	if a.HealthPath == "" {
		a.HealthPath = d.HealthPath
	}
	if a.Replicas == 0 {
		a.Replicas = d.Replicas
	}
	if len(a.Environments) == 0 {
		a.Environments = d.Environments
	}
	if a.Strategy.Type == "" {
		a.Strategy.Type = d.Strategy.Type
	}
	if len(a.Strategy.Steps) == 0 {
		a.Strategy.Steps = d.Strategy.Steps
	}
	if a.Strategy.StepTimeout == 0 {
		a.Strategy.StepTimeout = d.Strategy.StepTimeout
	}
	if a.Analysis.MaxErrorRate == 0 {
		a.Analysis.MaxErrorRate = d.Analysis.MaxErrorRate
	}
	if a.Analysis.MinRequests == 0 {
		a.Analysis.MinRequests = d.Analysis.MinRequests
	}
	if a.Analysis.Interval == 0 {
		a.Analysis.Interval = d.Analysis.Interval
	}
	if a.Run.StartTimeout == 0 {
		a.Run.StartTimeout = d.Run.StartTimeout
	}
	if a.Run.StopGrace == 0 {
		a.Run.StopGrace = d.Run.StopGrace
	}
	if a.Kube.Namespace == "" {
		a.Kube.Namespace = d.Kube.Namespace
	}
}
