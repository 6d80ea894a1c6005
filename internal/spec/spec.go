// Package spec describes an app as a team writes it: the YAML types, their
// defaults, loading from an apps folder and validation whose errors name the
// file, line and field. It must not know how or where an app runs: it turns
// text into checked values and renders the templates a runtime asks for,
// nothing more.
//
// docs/spec.md documents every field with its default.
package spec

import (
	"time"

	"github.com/shipteam/ship/internal/release"
)

// Kind says how an app is run and rolled out. Only KindWeb is implemented;
// the field exists from the start so worker and cron apps slot in later.
type Kind string

const (
	KindWeb    Kind = "web"    // a port, a health path, traffic through a router, canary by weight
	KindWorker Kind = "worker" // no port: replaced instance by instance, canary by instance count
	KindCron   Kind = "cron"   // runs on Schedule; each run is a process or a Job
)

// StrategyType names how a release moves traffic to a new version.
type StrategyType string

const (
	StrategyCanary  StrategyType = "canary"
	StrategyRolling StrategyType = "rolling"
)

// App is one app's spec. Everything but Name and Run.Command (for the
// embedded runtime) or Kube.Image (for Kubernetes) has a default; values
// returned by Parse, LoadFile and LoadDir have every default filled in.
type App struct {
	Name         string     `yaml:"name" json:"name"`                   // a DNS-1123 label: lowercase letters, digits, '-'
	Kind         Kind       `yaml:"kind" json:"kind"`                   // default web
	Port         int        `yaml:"port" json:"port"`                   // the port users connect to (router listener); default 0 = pick a free one
	Listen       string     `yaml:"listen" json:"listen"`               // host of the router listener; default 127.0.0.1
	HealthPath   string     `yaml:"healthPath" json:"healthPath"`       // default /healthz
	Replicas     int        `yaml:"replicas" json:"replicas"`           // stable instances; default 1; 0 is allowed (stopped)
	Environments []string   `yaml:"environments" json:"environments"`   // default [production]; the first is the default env
	Schedule     string     `yaml:"schedule" json:"schedule,omitempty"` // cron apps only: five cron fields
	Strategy     Strategy   `yaml:"strategy" json:"strategy"`
	Analysis     Analysis   `yaml:"analysis" json:"analysis"`
	Stickiness   Stickiness `yaml:"stickiness" json:"stickiness"`
	Run          Run        `yaml:"run" json:"run"`   // embedded runtime
	Kube         Kube       `yaml:"kube" json:"kube"` // Kubernetes runtime

	// Source is where the spec was loaded from, for messages; not YAML.
	Source string `yaml:"-" json:"source,omitempty"`
	// BaseDir is the absolute directory of the spec file, against which
	// relative Run.Command and Run.Dir resolve. LoadFile and LoadDir set it;
	// when empty the directory of Source is used.
	BaseDir string `yaml:"-" json:"-"`

	// defaulted is set once the defaults are in (Parse, LoadFile, LoadDir,
	// SetDefaults): from then on a zero is a value someone chose, and
	// NewCatalog does not default it again.
	defaulted bool
}

// Strategy is the default rollout plan of a deploy.
type Strategy struct {
	Type  StrategyType `yaml:"type" json:"type"`   // default canary
	Steps []Step       `yaml:"steps" json:"steps"` // default 1, 10, 50, 100 percent
	// StepTimeout bounds how long one step may wait for enough data or for
	// instances to become ready before the release fails. Default 5m.
	StepTimeout Duration `yaml:"stepTimeout" json:"stepTimeout"`
}

// Step is one canary weight held for Pause while analysis runs. In YAML a
// step is either a mapping (weight, pause) or just a weight ("- 10" or
// "- 10%"), which takes the default pause.
type Step struct {
	Weight release.Weight `yaml:"weight" json:"weight"` // share of traffic to the canary, 0 < w <= 100%
	Pause  Duration       `yaml:"pause" json:"pause"`   // default 30s (0 for a last step of 100)
}

// Analysis holds the thresholds the canary is judged by against stable.
type Analysis struct {
	MaxErrorRate float64  `yaml:"maxErrorRate" json:"maxErrorRate"` // fraction of 5xx and failed requests, 0..1; default 0.05
	MinRequests  int      `yaml:"minRequests" json:"minRequests"`   // canary requests needed for a verdict, >= 1; default 20
	MaxP99Ratio  float64  `yaml:"maxP99Ratio" json:"maxP99Ratio"`   // canary p99 / stable p99; 0 = not judged; default 0
	Interval     Duration `yaml:"interval" json:"interval"`         // how often metrics are judged; default 250ms
	// Prometheus holds the queries the Prometheus analysis source runs
	// (ship serve --prometheus); unused with the router's own metrics.
	Prometheus PrometheusQueries `yaml:"prometheus" json:"prometheus,omitzero"`
}

// PrometheusQueries are PromQL templates with {{.App}}, {{.Env}},
// {{.Namespace}}, {{.Track}} and {{.Version}}, each rendered once per track
// and evaluated as an instant query. Requests and Errors give cumulative
// counts (one number: the values of all series are added); Latency gives a
// cumulative histogram, one series per "le" label. An empty query uses the
// default of the same name (DefaultPromRequests...); App.PrometheusQueryFor
// renders them.
type PrometheusQueries struct {
	Requests string `yaml:"requests" json:"requests,omitempty"` // completed requests
	Errors   string `yaml:"errors" json:"errors,omitempty"`     // failed requests (5xx)
	Latency  string `yaml:"latency" json:"latency,omitempty"`   // e.g. sum by (le) (..._bucket{...})
}

// Stickiness keeps one user on one version when set.
type Stickiness struct {
	Header string `yaml:"header" json:"header,omitempty"` // e.g. X-User-ID
	Cookie string `yaml:"cookie" json:"cookie,omitempty"` // e.g. ship_track
}

// Run says how the embedded runtime starts one instance of a version.
// Command, Args, Env values and Dir are templates with {{.Version}},
// {{.Port}}, {{.App}}, {{.Env}} and {{.Instance}}; App.RunFor renders them.
type Run struct {
	Command string            `yaml:"command" json:"command"` // a path (relative to the spec's directory) or a name looked up in PATH
	Args    []string          `yaml:"args" json:"args,omitempty"`
	Env     map[string]string `yaml:"env" json:"env,omitempty"`
	Dir     string            `yaml:"dir" json:"dir,omitempty"` // default: the spec's directory
	// StartTimeout bounds how long a new instance may take to answer its
	// health path. Default 30s.
	StartTimeout Duration `yaml:"startTimeout" json:"startTimeout"`
	// StopGrace is the time between SIGTERM and SIGKILL. Default 10s.
	StopGrace Duration `yaml:"stopGrace" json:"stopGrace"`
}

// Kube says how the Kubernetes runtime runs the app.
type Kube struct {
	Image     string            `yaml:"image" json:"image,omitempty"`     // template with {{.Version}}, {{.App}}, {{.Env}}
	Namespace string            `yaml:"namespace" json:"namespace"`       // template with {{.App}}, {{.Env}}; default ship-{{.Env}}
	Expose    bool              `yaml:"expose" json:"expose"`             // a Service of type LoadBalancer
	Gateway   *GatewayRef       `yaml:"gateway" json:"gateway,omitempty"` // weights on an HTTPRoute when set
	Autoscale *Autoscale        `yaml:"autoscale" json:"autoscale,omitempty"`
	Resources Resources         `yaml:"resources" json:"resources"`
	Env       map[string]string `yaml:"env" json:"env,omitempty"` // values are templates like Run.Env
}

// GatewayRef names the Gateway API Gateway an app's HTTPRoute attaches to.
type GatewayRef struct {
	Name      string `yaml:"name" json:"name"`
	Namespace string `yaml:"namespace" json:"namespace,omitempty"` // default: the app's namespace
}

// Autoscale is a HorizontalPodAutoscaler's range and CPU target.
type Autoscale struct {
	Min       int `yaml:"min" json:"min"`             // >= 1
	Max       int `yaml:"max" json:"max"`             // >= Min
	TargetCPU int `yaml:"targetCPU" json:"targetCPU"` // percent of the CPU request, 1..1000
}

// Resources are Kubernetes quantities per instance (requests = limits).
type Resources struct {
	CPU    string `yaml:"cpu" json:"cpu,omitempty"`       // e.g. 500m, 1, 1.5
	Memory string `yaml:"memory" json:"memory,omitempty"` // e.g. 256Mi, 1Gi
}

// Duration is a time.Duration written in YAML and JSON as "30s", "5m",
// "250ms". A bare number is refused (except 0) so "30" never means 30ns.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats like time.Duration ("30s", "5m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as "30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads "30s", "5m", "250ms" or "0"; negative values are refused.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
