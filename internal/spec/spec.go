// Package spec describes an app as a team writes it: the YAML types, their
// defaults, loading from an apps folder and validation whose errors name the
// file, line and field. It must not know how or where an app runs.
package spec

import "time"

// Kind says how an app is run and rolled out. Only KindWeb is implemented;
// the field exists from the start so worker and cron apps slot in later.
type Kind string

const (
	KindWeb    Kind = "web"
	KindWorker Kind = "worker"
	KindCron   Kind = "cron"
)

// StrategyType names how a release moves traffic to a new version.
type StrategyType string

const (
	StrategyCanary  StrategyType = "canary"
	StrategyRolling StrategyType = "rolling"
)

// App is one app's spec. Everything but Name and Run.Command (for the
// embedded runtime) or Kube.Image (for Kubernetes) has a default.
type App struct {
	Name         string     `yaml:"name"`
	Kind         Kind       `yaml:"kind"`         // default web
	Port         int        `yaml:"port"`         // the port users connect to (router listener); default 0 = pick a free one
	Listen       string     `yaml:"listen"`       // host of the router listener; default 127.0.0.1
	HealthPath   string     `yaml:"healthPath"`   // default /healthz
	Replicas     int        `yaml:"replicas"`     // stable instances; default 1
	Environments []string   `yaml:"environments"` // default [production]
	Strategy     Strategy   `yaml:"strategy"`
	Analysis     Analysis   `yaml:"analysis"`
	Stickiness   Stickiness `yaml:"stickiness"`
	Run          Run        `yaml:"run"`  // embedded runtime
	Kube         Kube       `yaml:"kube"` // Kubernetes runtime

	// Source is where the spec was loaded from, for messages; not YAML.
	Source string `yaml:"-"`
}

// Strategy is the default rollout plan of a deploy.
type Strategy struct {
	Type  StrategyType `yaml:"type"`  // default canary
	Steps []Step       `yaml:"steps"` // default 1, 10, 50, 100 percent
	// StepTimeout bounds how long one step may wait for enough data or for
	// instances to become ready before the release fails. Default 5m.
	StepTimeout Duration `yaml:"stepTimeout"`
}

// Step is one canary weight held for Pause while analysis runs.
type Step struct {
	Weight float64  `yaml:"weight"` // percent of traffic to the canary, 0 < w <= 100; 0.1 allowed
	Pause  Duration `yaml:"pause"`  // default 30s (the last step, 100, may have 0)
}

// Analysis holds the thresholds the canary is judged by against stable.
type Analysis struct {
	MaxErrorRate float64  `yaml:"maxErrorRate"` // fraction of 5xx and failed requests; default 0.05
	MinRequests  int      `yaml:"minRequests"`  // canary requests needed for a verdict; default 20
	MaxP99Ratio  float64  `yaml:"maxP99Ratio"`  // canary p99 / stable p99; 0 = not judged; default 0
	Interval     Duration `yaml:"interval"`     // how often metrics are judged; default 250ms
}

// Stickiness keeps one user on one version when set.
type Stickiness struct {
	Header string `yaml:"header"` // e.g. X-User-ID
	Cookie string `yaml:"cookie"` // e.g. ship_track
}

// Run says how the embedded runtime starts one instance of a version.
// Command, Args, Env values and Dir are templates with {{.Version}},
// {{.Port}}, {{.App}}, {{.Env}} and {{.Instance}}.
type Run struct {
	Command string            `yaml:"command"`
	Args    []string          `yaml:"args"`
	Env     map[string]string `yaml:"env"`
	Dir     string            `yaml:"dir"`
	// StartTimeout bounds how long a new instance may take to answer its
	// health path. Default 30s.
	StartTimeout Duration `yaml:"startTimeout"`
	// StopGrace is the time between SIGTERM and SIGKILL. Default 10s.
	StopGrace Duration `yaml:"stopGrace"`
}

// Kube says how the Kubernetes runtime runs the app.
type Kube struct {
	Image     string            `yaml:"image"`     // template with {{.Version}}
	Namespace string            `yaml:"namespace"` // template with {{.Env}}; default ship-{{.Env}}
	Expose    bool              `yaml:"expose"`    // a Service of type LoadBalancer
	Gateway   *GatewayRef       `yaml:"gateway"`   // weights on an HTTPRoute when set
	Autoscale *Autoscale        `yaml:"autoscale"`
	Resources Resources         `yaml:"resources"`
	Env       map[string]string `yaml:"env"`
}

type GatewayRef struct {
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace"`
}

type Autoscale struct {
	Min       int `yaml:"min"`
	Max       int `yaml:"max"`
	TargetCPU int `yaml:"targetCPU"` // percent
}

type Resources struct {
	CPU    string `yaml:"cpu"`
	Memory string `yaml:"memory"`
}

// Duration is a time.Duration written in YAML as "30s", "5m".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
