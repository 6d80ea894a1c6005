package spec

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// A bare App built in Go gets the defaults docs/spec.md documents, as a
// YAML file that leaves every field out does.
func TestNewCatalogFillsTheDocumentedDefaults(t *testing.T) {
	c, err := NewCatalog(App{Name: "web", Run: Run{Command: "./web"}})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := c.Get("web")
	if !ok {
		t.Fatal("web not in the catalog")
	}
	want := App{
		Name: "web", Kind: KindWeb, Port: 0, Listen: "127.0.0.1", HealthPath: "/healthz", Replicas: 1,
		Environments: []string{"production"},
		Strategy: Strategy{Type: StrategyCanary, StepTimeout: Duration(5 * time.Minute), Steps: []Step{
			{100, Duration(30 * time.Second)}, {1000, Duration(30 * time.Second)}, {5000, Duration(30 * time.Second)}, {10000, 0}}},
		Analysis:  Analysis{MaxErrorRate: 0.05, MinRequests: 20, Interval: Duration(250 * time.Millisecond)},
		Run:       Run{Command: "./web", StartTimeout: Duration(30 * time.Second), StopGrace: Duration(10 * time.Second)},
		Kube:      Kube{Namespace: "ship-{{.Env}}"},
		defaulted: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	// The same as loading a file that sets only name and run.command.
	apps, err := Parse("web.yaml", []byte("name: web\nrun: {command: ./web}\n"))
	if err != nil {
		t.Fatal(err)
	}
	apps[0].Source = ""
	if !reflect.DeepEqual(got, apps[0]) {
		t.Fatalf("NewCatalog %+v\nParse      %+v", got, apps[0])
	}
}

// An app that has had its defaults (from Parse, LoadFile, LoadDir or
// SetDefaults) keeps a deliberate zero: NewCatalog does not default it again.
func TestNewCatalogKeepsDeliberateZeros(t *testing.T) {
	apps, err := Parse("z.yaml", []byte("name: z\nreplicas: 0\nanalysis: {maxErrorRate: 0}\nrun: {command: x, stopGrace: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	byHand := App{Name: "h", Run: Run{Command: "x"}}
	byHand.SetDefaults()
	byHand.Replicas = 0
	c, err := NewCatalog(apps[0], byHand)
	if err != nil {
		t.Fatal(err)
	}
	z, _ := c.Get("z")
	if z.Replicas != 0 || z.Analysis.MaxErrorRate != 0 || z.Run.StopGrace != 0 {
		t.Errorf("loaded app's zeros replaced: replicas %d maxErrorRate %g stopGrace %s", z.Replicas, z.Analysis.MaxErrorRate, z.Run.StopGrace)
	}
	if h, _ := c.Get("h"); h.Replicas != 0 {
		t.Errorf("replicas set to 0 after SetDefaults became %d", h.Replicas)
	}
}

// Invalid apps are refused, every problem at once, each naming the app and
// the field; apps are checked together as LoadDir checks files (a name
// twice, a fixed port twice).
func TestNewCatalogRefusesInvalidApps(t *testing.T) {
	_, err := NewCatalog(
		App{Name: "ok", Run: Run{Command: "./ok"}},
		App{Name: "web", Replicas: -1, Strategy: Strategy{Steps: []Step{{Weight: 15000}}}, Run: Run{Command: "./web"}},
		App{Name: "noway"},
		App{Name: "Bad_Name", Run: Run{Command: "./x"}},
	)
	if err == nil {
		t.Fatal("invalid apps accepted")
	}
	msg := err.Error()
	for _, w := range []string{
		`app web: replicas: must be between 0 and 1000, got -1`,
		`app web: strategy.steps[0].weight: must be > 0 and <= 100, got 150`,
		`app noway: run.command: required: how to start a version, e.g. ./bin/noway (or set kube.image for Kubernetes)`,
		`app "Bad_Name": name: must be a DNS-1123 label`,
	} {
		if !strings.Contains(msg, w) {
			t.Errorf("error does not say %q:\n%s", w, msg)
		}
	}
	if strings.Contains(msg, "app ok") {
		t.Errorf("the valid app is reported:\n%s", msg)
	}
	if n := len(Problems(err)); n != 4 {
		t.Errorf("%d problems, want 4:\n%s", n, msg)
	}

	_, err = NewCatalog(App{Name: "a", Port: 8080, Run: Run{Command: "./a"}}, App{Name: "a", Run: Run{Command: "./b"}})
	if err == nil || !strings.Contains(err.Error(), `app a: name: app "a" is defined twice`) {
		t.Errorf("a name twice: %v", err)
	}
	_, err = NewCatalog(
		App{Name: "a", Port: 8080, Environments: []string{"production", "staging"}, Run: Run{Command: "./a"}},
		App{Name: "b", Port: 8081, Run: Run{Command: "./b"}},
	)
	if err == nil || !strings.Contains(err.Error(), "app b: port: 127.0.0.1:8081 (environment production) is also used by app a (environment staging)") {
		t.Errorf("a port twice: %v", err)
	}
}
