package spec

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseFillsEveryDefault(t *testing.T) {
	apps, err := Parse("min.yaml", []byte("name: tiny\nrun: {command: ./tiny}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := apps[0]
	want := App{
		Name: "tiny", Kind: KindWeb, Port: 0, Listen: "127.0.0.1", HealthPath: "/healthz", Replicas: 1,
		Environments: []string{"production"},
		Strategy: Strategy{Type: StrategyCanary, StepTimeout: Duration(5 * time.Minute), Steps: []Step{
			{100, Duration(30 * time.Second)}, {1000, Duration(30 * time.Second)}, {5000, Duration(30 * time.Second)}, {10000, 0}}},
		Analysis:  Analysis{MaxErrorRate: 0.05, MinRequests: 20, Interval: Duration(250 * time.Millisecond)},
		Run:       Run{Command: "./tiny", StartTimeout: Duration(30 * time.Second), StopGrace: Duration(10 * time.Second)},
		Kube:      Kube{Namespace: "ship-{{.Env}}"},
		Source:    "min.yaml",
		defaulted: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestExplicitZeroIsKeptNotDefaulted(t *testing.T) {
	apps, err := Parse("z.yaml", []byte("name: z\nreplicas: 0\nanalysis: {maxErrorRate: 0}\nrun: {command: x, stopGrace: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := apps[0]
	if a.Replicas != 0 || a.Analysis.MaxErrorRate != 0 || a.Run.StopGrace != 0 {
		t.Fatalf("zeros replaced by defaults: %+v", a)
	}
}

func TestStepPausesDefaultByPosition(t *testing.T) {
	apps, err := Parse("s.yaml", []byte(`name: s
run: {command: x}
strategy:
  steps:
    - 0.5%
    - {weight: 25, pause: 2m}
    - weight: 60
    - 100
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Step{{50, Duration(30 * time.Second)}, {2500, Duration(2 * time.Minute)}, {6000, Duration(30 * time.Second)}, {10000, 0}}
	if got := apps[0].Strategy.Steps; !reflect.DeepEqual(got, want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
	// A last step below 100 keeps its pause: the engine still watches it.
	apps, err = Parse("s.yaml", []byte("name: s\nrun: {command: x}\nstrategy: {steps: [5, 50]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := apps[0].Strategy.Steps[1].Pause; p != DefaultStepPause {
		t.Fatalf("last step below 100 pause %v, want %v", p, DefaultStepPause)
	}
}

func TestRunForRendersTemplatesAndResolvesPaths(t *testing.T) {
	apps, err := Parse("/srv/apps/web.yaml", []byte(`name: web
environments: [production, staging]
run:
  command: ../bin/web-{{.Version}}
  args: ["--addr", "127.0.0.1:{{.Port}}", "--name={{.App}}-{{.Env}}-{{.Instance}}"]
  env: {B: "{{.Version}}", A: plain}
  dir: data/{{.Env}}
`))
	if err != nil {
		t.Fatal(err)
	}
	a := apps[0]
	cmd, args, env, dir, err := a.RunFor("v2", 41001, "staging", 3)
	if err != nil {
		t.Fatal(err)
	}
	if cmd != "/srv/bin/web-v2" {
		t.Errorf("cmd %q", cmd)
	}
	if want := []string{"--addr", "127.0.0.1:41001", "--name=web-staging-3"}; !reflect.DeepEqual(args, want) {
		t.Errorf("args %q, want %q", args, want)
	}
	if want := []string{"A=plain", "B=v2"}; !reflect.DeepEqual(env, want) {
		t.Errorf("env %q, want %q", env, want)
	}
	if dir != "/srv/apps/data/staging" {
		t.Errorf("dir %q", dir)
	}
	// "" is the default environment; an unknown one is an error.
	if _, args, _, _, err := a.RunFor("v1", 1, "", 0); err != nil || args[2] != "--name=web-production-0" {
		t.Errorf("default env: %q %v", args, err)
	}
	if _, _, _, _, err := a.RunFor("v1", 1, "qa", 0); err == nil || !strings.Contains(err.Error(), `no environment "qa"`) {
		t.Errorf("unknown env: %v", err)
	}
}

func TestRunForKeepsBareCommandForPathLookupAndDefaultsDirToSpecDir(t *testing.T) {
	a := App{Name: "p", Environments: []string{"production"}, Source: "/x/y/p.yaml", Run: Run{Command: "python3"}}
	cmd, _, _, dir, err := a.RunFor("v1", 0, "", 0)
	if err != nil || cmd != "python3" || dir != "/x/y" {
		t.Fatalf("cmd %q dir %q err %v", cmd, dir, err)
	}
}

func TestImageAndNamespaceRender(t *testing.T) {
	a := App{Name: "r", Environments: []string{"prod"}, Kube: Kube{Image: "ghcr.io/x/{{.App}}:{{.Version}}"}}
	img, err := a.ImageFor("v3", "")
	if err != nil || img != "ghcr.io/x/r:v3" {
		t.Fatalf("image %q %v", img, err)
	}
	ns, err := a.NamespaceFor("")
	if err != nil || ns != "ship-prod" {
		t.Fatalf("namespace %q %v", ns, err)
	}
	if _, err := (App{Name: "r"}).ImageFor("v1", ""); err == nil {
		t.Fatal("no image set must be an error")
	}
}

// An image with {{.Env}} is rendered for the environment asked, not the
// default one: a staging deploy must not run the production image.
func TestImageForRendersTheEnvironmentAsked(t *testing.T) {
	a := App{Name: "web", Environments: []string{"production", "staging"}, Kube: Kube{Image: "reg/{{.App}}-{{.Env}}:{{.Version}}"}}
	for env, want := range map[string]string{
		"":           "reg/web-production:v1", // the default environment
		"production": "reg/web-production:v1",
		"staging":    "reg/web-staging:v1",
	} {
		if got, err := a.ImageFor("v1", env); err != nil || got != want {
			t.Errorf("ImageFor(v1, %q) = %q, %v; want %q", env, got, err, want)
		}
	}
	if _, err := a.ImageFor("v1", "qa"); err == nil || !strings.Contains(err.Error(), `no environment "qa"`) {
		t.Errorf("unknown env: %v", err)
	}
}

func TestPortForGivesEachEnvironmentItsOwnPort(t *testing.T) {
	a := App{Port: 8080, Environments: []string{"production", "staging", "dev"}}
	for env, want := range map[string]int{"production": 8080, "staging": 8081, "dev": 8082, "": 8080, "nope": 0} {
		if got := a.PortFor(env); got != want {
			t.Errorf("PortFor(%q) = %d, want %d", env, got, want)
		}
	}
	a.Port = 0
	if a.PortFor("staging") != 0 {
		t.Error("port 0 must stay 0")
	}
	if !a.HasEnv("dev") || a.HasEnv("qa") || a.DefaultEnv() != "production" {
		t.Error("HasEnv/DefaultEnv")
	}
}

func TestLoadDirReadsYAMLAndYMLSortedByName(t *testing.T) {
	c, err := LoadDir("testdata/apps")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Names(), ","); got != "jobs,web" {
		t.Fatalf("names %s", got)
	}
	web, ok := c.Get("web")
	if !ok || web.Source != filepath.Join("testdata/apps", "web.yaml") || !filepath.IsAbs(web.BaseDir) {
		t.Fatalf("web %+v", web)
	}
	cmd, _, _, _, err := web.RunFor("v1", 1, "", 0)
	if err != nil || cmd != filepath.Join(web.BaseDir, "bin/web") {
		t.Fatalf("cmd %q %v", cmd, err)
	}
	if _, ok := c.Get("nope"); ok {
		t.Fatal("unknown app found")
	}
	if len(c.All()) != 2 || c.All()[0].Name != "jobs" {
		t.Fatal("All not sorted")
	}
}

func TestLoadDirNamesBothFilesOfADuplicateAppAndPort(t *testing.T) {
	_, err := LoadDir("testdata/dup")
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		filepath.Join("testdata/dup", "b.yaml") + `:2:7: name: app "web" is already defined at ` + filepath.Join("testdata/dup", "a.yaml") + ":1:7",
		filepath.Join("testdata/dup", "c.yaml") + ":2:7: port: 127.0.0.1:9001 (environment production) is also used by app web (environment staging) at " + filepath.Join("testdata/dup", "a.yaml") + ":2:7",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in\n%s", want, msg)
		}
	}
}

func TestLoadDirJoinsProblemsOfEveryFile(t *testing.T) {
	_, err := LoadDir("testdata/bad")
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		filepath.Join("testdata/bad", "one.yaml") + `:2:11: replicas: must be an integer, got "many"`,
		filepath.Join("testdata/bad", "two.yaml") + ":2:23: strategy.steps[1].weight: must be greater than the previous step's weight (5), got 1",
		filepath.Join("testdata/bad", "two.yaml") + ":1:1: run.command: required",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in\n%s", want, msg)
		}
	}
}

func TestLoadDirReadsAShipYAMLListWithAnchors(t *testing.T) {
	c, err := LoadDir("testdata/list")
	if err != nil {
		t.Fatal(err)
	}
	api, _ := c.Get("api")
	if api.Replicas != 3 || api.Analysis.MaxErrorRate != 0.01 || api.Analysis.MinRequests != 20 || api.Port != 7000 {
		t.Fatalf("api %+v", api)
	}
	rep, ok := c.Get("reports")
	if !ok || rep.Kind != KindCron || rep.Schedule != "0 3 * * *" {
		t.Fatalf("reports %+v", rep)
	}
}

func TestParseReadsSeveralDocuments(t *testing.T) {
	apps, err := Parse("m.yaml", []byte("name: a\nrun: {command: x}\n---\n---\nname: b\nrun: {command: y}\n"))
	if err != nil || len(apps) != 2 || apps[1].Name != "b" {
		t.Fatalf("%v %v", apps, err)
	}
}

func TestLoadDirErrors(t *testing.T) {
	if _, err := LoadDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no app specs") {
		t.Fatalf("empty dir: %v", err)
	}
	if _, err := LoadDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing dir: no error")
	}
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("name: a\n# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "big.yaml:1:1: file is larger than") {
		t.Fatalf("big file: %v", err)
	}
}

func TestAliasBombIsRefusedQuickly(t *testing.T) {
	// Merge keys can nest: each level merges the one below ten times, so
	// nine levels would visit 10^9 values without the node budget.
	var b strings.Builder
	b.WriteString("x-a: &a {replicas: 1}\n")
	prev := "a"
	for i := 0; i < 8; i++ {
		name := string(rune('b' + i))
		b.WriteString("x-" + name + ": &" + name + " {<<: [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(",")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]}\n")
		prev = name
	}
	b.WriteString("<<: *" + prev + "\nname: a\nrun: {command: x}\n")
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestExampleResizerSpecLoads(t *testing.T) {
	c, err := LoadDir("../../examples/apps")
	if err != nil {
		t.Fatal(err)
	}
	a, ok := c.Get("resizer")
	if !ok || a.Port != 8080 || a.Replicas != 2 || a.HealthPath != "/healthz" {
		t.Fatalf("resizer %+v", a)
	}
	cmd, args, _, _, err := a.RunFor("v2", 40000, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs("../..")
	if cmd != filepath.Join(root, "bin/resizer") || strings.Join(args, " ") != "--addr 127.0.0.1:40000 --version-name v2" {
		t.Fatalf("%s %q", cmd, args)
	}
	if img, _ := a.ImageFor("v2", ""); img != "ghcr.io/shipteam/resizer:v2" {
		t.Fatalf("image %s", img)
	}
	if as := a.Kube.Autoscale; as == nil || as.Min != 2 || as.Max != 10 || as.TargetCPU != 70 || !a.Kube.Expose {
		t.Fatalf("kube %+v", a.Kube)
	}
}

func TestDurationTextRoundTrip(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d.D() != 90*time.Second {
		t.Fatal(d, err)
	}
	b, _ := d.MarshalText()
	if string(b) != "1m30s" {
		t.Fatal(string(b))
	}
	if err := d.UnmarshalText([]byte("30")); err == nil {
		t.Fatal("bare number accepted")
	}
}

func TestKubernetesOnlyAppsMayShareAPort(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a", "b"} {
		spec := "name: " + n + "\nport: 80\nkube: {image: 'x/" + n + ":{{.Version}}'}\n"
		if err := os.WriteFile(filepath.Join(dir, n+".yaml"), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := LoadDir(dir)
	if err != nil || c.Len() != 2 {
		t.Fatalf("%v", err)
	}
}
