package spec

import (
	"errors"
	"strings"
	"testing"
)

// Each case is a whole file so the expected line:column is visible.
func TestParseReportsEachProblemAtItsLineAndField(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // one expected problem, exactly
	}{
		{"weight above 100", `name: resizer
run: {command: ./bin/resizer}
strategy:
  steps:
    - weight: 1
    - weight: 10
    - weight: 150
`, "a.yaml:7:15: strategy.steps[2].weight: must be > 0 and <= 100, got 150"},
		{"weight zero", "name: a\nrun: {command: x}\nstrategy: {steps: [0, 10]}\n",
			"a.yaml:3:20: strategy.steps[0].weight: must be > 0 and <= 100, got 0"},
		{"weights not ascending", "name: a\nrun: {command: x}\nstrategy: {steps: [10, 5]}\n",
			"a.yaml:3:24: strategy.steps[1].weight: must be greater than the previous step's weight (10), got 5"},
		{"weight repeated", "name: a\nrun: {command: x}\nstrategy: {steps: [10, 10]}\n",
			"a.yaml:3:24: strategy.steps[1].weight: must be greater than the previous step's weight (10), got 10"},
		{"weight three decimals", "name: a\nrun: {command: x}\nstrategy: {steps: [0.125]}\n",
			`a.yaml:3:20: strategy.steps[0].weight: must be a percentage such as 1, 10% or 0.5% (at most two decimals), got "0.125"`},
		{"no steps", "name: a\nrun: {command: x}\nstrategy: {steps: []}\n",
			"a.yaml:3:19: strategy.steps: a canary needs at least one step, e.g. [1, 10, 50, 100]"},
		{"unknown strategy", "name: a\nrun: {command: x}\nstrategy:\n  type: bluegreen\n",
			`a.yaml:4:9: strategy.type: must be canary or rolling, got "bluegreen"`},
		{"missing name", "port: 80\nrun: {command: x}\n",
			"a.yaml:1:1: name: required: a lowercase name such as resizer"},
		{"bad name", "name: My_App\nrun: {command: x}\n",
			`a.yaml:1:7: name: must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63), got "My_App"`},
		{"name too long", "name: " + strings.Repeat("a", 64) + "\nrun: {command: x}\n",
			`a.yaml:1:7: name: must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63), got "` + strings.Repeat("a", 64) + `"`},
		{"port too big", "name: a\nport: 70000\nrun: {command: x}\n",
			"a.yaml:2:7: port: must be between 0 and 65535 (0 picks a free port), got 70000"},
		{"port negative", "name: a\nport: -1\nrun: {command: x}\n",
			"a.yaml:2:7: port: must be between 0 and 65535 (0 picks a free port), got -1"},
		{"port range over envs", "name: a\nport: 65535\nenvironments: [production, staging]\nrun: {command: x}\n",
			"a.yaml:2:7: port: environment 1 would listen on port 65536, above 65535 (environment i listens on port+i)"},
		{"port not a number", "name: a\nport: eighty\nrun: {command: x}\n",
			`a.yaml:2:7: port: must be an integer, got "eighty"`},
		{"port float", "name: a\nport: 80.5\nrun: {command: x}\n",
			`a.yaml:2:7: port: must be an integer, got "80.5"`},
		{"worker with port", "name: a\nkind: worker\nport: 80\nrun: {command: x}\n",
			"a.yaml:3:7: port: only web apps have a port; remove it for kind worker"},
		{"replicas negative", "name: a\nreplicas: -2\nrun: {command: x}\n",
			"a.yaml:2:11: replicas: must be between 0 and 1000, got -2"},
		{"replicas huge", "name: a\nreplicas: 1000000\nrun: {command: x}\n",
			"a.yaml:2:11: replicas: must be between 0 and 1000, got 1000000"},
		{"max error rate above 1", "name: a\nrun: {command: x}\nanalysis:\n  maxErrorRate: 5\n",
			"a.yaml:4:17: analysis.maxErrorRate: must be a fraction between 0 and 1 (0.05 = 5%), got 5"},
		{"max error rate negative", "name: a\nrun: {command: x}\nanalysis: {maxErrorRate: -0.1}\n",
			"a.yaml:3:26: analysis.maxErrorRate: must be a fraction between 0 and 1 (0.05 = 5%), got -0.1"},
		{"max error rate .nan", "name: a\nrun: {command: x}\nanalysis: {maxErrorRate: .nan}\n",
			`a.yaml:3:26: analysis.maxErrorRate: must be a number, got ".nan"`},
		{"min requests zero", "name: a\nrun: {command: x}\nanalysis: {minRequests: 0}\n",
			"a.yaml:3:25: analysis.minRequests: must be at least 1 (no data is never a pass), got 0"},
		{"duplicate environment", "name: a\nrun: {command: x}\nenvironments: [production, staging, production]\n",
			`a.yaml:3:37: environments[2]: environment "production" is listed twice (also environments[0])`},
		{"bad environment", "name: a\nrun: {command: x}\nenvironments: [Prod]\n",
			`a.yaml:3:16: environments[0]: must be a DNS-1123 label (lowercase letters, digits and '-'), got "Prod"`},
		{"empty environments", "name: a\nrun: {command: x}\nenvironments: []\n",
			"a.yaml:3:15: environments: must list at least one environment, e.g. [production]"},
		{"unknown kind", "name: a\nkind: daemon\nrun: {command: x}\n",
			`a.yaml:2:7: kind: must be one of web, worker, cron, got "daemon"`},
		{"cron without schedule", "name: a\nkind: cron\nrun: {command: x}\n",
			`a.yaml:1:1: schedule: required for cron apps: five cron fields such as "0 3 * * *"`},
		{"bad schedule", "name: a\nkind: cron\nschedule: every day\nrun: {command: x}\n",
			`a.yaml:3:11: schedule: must be five cron fields such as "0 3 * * *", got "every day"`},
		{"missing command", "name: a\nport: 8080\n",
			"a.yaml:1:1: run.command: required: how to start a version, e.g. ./bin/a (or set kube.image for Kubernetes)"},
		{"missing command in run", "name: a\nrun:\n  args: [x]\n",
			"a.yaml:3:3: run.command: required: how to start a version, e.g. ./bin/a (or set kube.image for Kubernetes)"},
		{"unknown template key", "name: a\nrun:\n  command: x\n  args: [\"--v={{.Verison}}\"]\n",
			"a.yaml:4:10: run.args[0]: unknown template key .Verison here; use {{.Version}}, {{.Port}}, {{.App}}, {{.Env}}, {{.Instance}}"},
		{"template syntax", "name: a\nrun:\n  command: \"x{{.Version\"\n",
			"a.yaml:3:12: run.command: invalid template: unclosed action"},
		{"template with logic", "name: a\nrun:\n  command: '{{if .Port}}x{{end}}'\n",
			"a.yaml:3:12: run.command: only plain substitutions are supported, got {{if .Port}}x{{end}}; use {{.Version}}, {{.Port}}, {{.App}}, {{.Env}}, {{.Instance}}"},
		{"template key case", "name: a\nrun:\n  command: x\n  args: [\"--port={{.port}}\"]\n",
			"a.yaml:4:10: run.args[0]: unknown template key .port; did you mean {{.Port}}?"},
		{"port in image", "name: a\nkube:\n  image: 'r:{{.Port}}'\n",
			"a.yaml:3:10: kube.image: unknown template key .Port here; use {{.Version}}, {{.App}}, {{.Env}}"},
		{"bad env var name", "name: a\nrun:\n  command: x\n  env: {1X: y}\n",
			`a.yaml:4:13: run.env.1X: must be an environment variable name (letters, digits, '_', not starting with a digit), got "1X"`},
		{"unknown field with suggestion", "name: a\nhealthpath: /h\nrun: {command: x}\n",
			`a.yaml:2:1: unknown field "healthpath"; did you mean "healthPath"?`},
		{"unknown nested field", "name: a\nrun: {command: x, timeout: 5s}\n",
			`a.yaml:2:19: run: unknown field "timeout" (known: command, args, env, dir, startTimeout, stopGrace)`},
		{"typo nested field", "name: a\nrun: {comand: x}\n",
			`a.yaml:2:7: run: unknown field "comand"; did you mean "command"?`},
		{"duplicate key", "name: a\nport: 1\nport: 2\nrun: {command: x}\n",
			"a.yaml:3:1: port: set twice (first at line 2)"},
		{"duration without unit", "name: a\nrun: {command: x, startTimeout: 30}\n",
			`a.yaml:2:33: run.startTimeout: duration "30" needs a unit, e.g. 30s or 30ms`},
		{"duration garbage", "name: a\nrun: {command: x}\nstrategy: {stepTimeout: soon}\n",
			`a.yaml:3:25: strategy.stepTimeout: must be a duration such as 30s, 5m or 250ms, got "soon"`},
		{"negative duration", "name: a\nrun: {command: x}\nanalysis: {interval: -1s}\n",
			`a.yaml:3:22: analysis.interval: must not be negative, got "-1s"`},
		{"prometheus query syntax error", "name: a\nrun: {command: x}\nanalysis:\n  prometheus:\n    requests: 'sum(x{app=\"{{.App}\"})'\n",
			`a.yaml:5:15: analysis.prometheus.requests: invalid template: bad character U+007D '}'`},
		{"prometheus query unknown key", "name: a\nrun: {command: x}\nanalysis:\n  prometheus:\n    errors: 'sum(x{p=\"{{.Port}}\"})'\n",
			`a.yaml:5:13: analysis.prometheus.errors: unknown template key .Port here; use {{.App}}, {{.Env}}, {{.Namespace}}, {{.Track}}, {{.Version}}`},
		{"prometheus query key case", "name: a\nrun: {command: x}\nanalysis: {prometheus: {latency: 'sum by (le) (x{t=\"{{.track}}\"})'}}\n",
			`a.yaml:3:34: analysis.prometheus.latency: unknown template key .track; did you mean {{.Track}}?`},
		{"prometheus query blank", "name: a\nrun: {command: x}\nanalysis: {prometheus: {requests: '  '}}\n",
			`a.yaml:3:35: analysis.prometheus.requests: must be a PromQL query, or left out for the default`},
		{"prometheus unknown query", "name: a\nrun: {command: x}\nanalysis: {prometheus: {latancy: x}}\n",
			`a.yaml:3:25: analysis.prometheus: unknown field "latancy"; did you mean "latency"?`},
		{"zero step timeout", "name: a\nrun: {command: x}\nstrategy: {stepTimeout: 0}\n",
			"a.yaml:3:25: strategy.stepTimeout: must be more than 0, got 0s"},
		{"bool as string", "name: a\nkube: {image: x, expose: yes}\n",
			`a.yaml:2:26: kube.expose: must be true or false, got "yes"`},
		{"scalar for mapping", "name: a\nrun: ./x\n",
			`a.yaml:2:6: run: must be a mapping of fields, got "./x"`},
		{"null name", "name:\nrun: {command: x}\n",
			"a.yaml:1:6: name: must be a string, got nothing"},
		{"listen not an ip", "name: a\nlisten: example.com\nrun: {command: x}\n",
			`a.yaml:2:9: listen: must be an IP address such as 127.0.0.1 or 0.0.0.0, or localhost, got "example.com"`},
		{"health path relative", "name: a\nhealthPath: healthz\nrun: {command: x}\n",
			`a.yaml:2:13: healthPath: must be a path starting with / without spaces, got "healthz"`},
		{"sticky header", "name: a\nstickiness: {header: \"X User\"}\nrun: {command: x}\n",
			`a.yaml:2:22: stickiness.header: must be an HTTP header name such as X-User-ID, got "X User"`},
		{"autoscale max below min", "name: a\nkube:\n  image: x\n  autoscale: {min: 3, max: 2, targetCPU: 70}\n",
			"a.yaml:4:28: kube.autoscale.max: must be between min (3) and 1000, got 2"},
		{"autoscale target", "name: a\nkube:\n  image: x\n  autoscale: {min: 1, max: 2}\n",
			"a.yaml:4:14: kube.autoscale.targetCPU: must be a percentage between 1 and 1000, got 0"},
		{"resources quantity", "name: a\nkube: {image: x, resources: {cpu: lots}}\n",
			`a.yaml:2:35: kube.resources.cpu: must be a Kubernetes quantity such as 500m or 1, got "lots"`},
		{"namespace renders invalid", "name: a\nkube: {image: x, namespace: 'Ship_{{.Env}}'}\n",
			`a.yaml:2:29: kube.namespace: for environment production gives "Ship_production", which is not a DNS-1123 label`},
		{"gateway without name", "name: a\nkube: {image: x, gateway: {namespace: infra}}\n",
			`a.yaml:2:27: kube.gateway.name: must name a Gateway (a DNS-1123 subdomain), got ""`},
		{"not a mapping", "- a\n- b\n",
			"a.yaml:1:1: must be a mapping of fields, got a list"},
		{"yaml syntax", "name: a\nrun: {command: x\n",
			"a.yaml:2: invalid YAML: did not find expected ',' or '}'"},
		{"tab indentation", "name: a\nrun:\n\tcommand: x\n",
			"a.yaml:3: invalid YAML: found character that cannot start any token"},
		{"empty file", "# nothing\n",
			"a.yaml:1:1: no app in this file; an app spec needs at least name and run.command"},
		{"list file with extra key", "apps: []\nversion: 2\n",
			`a.yaml:2:1: unknown field "version"; a file with apps: holds only the list of apps (and x- fields)`},
		{"list file problem prefixed", "apps:\n  - name: a\n    run: {command: x}\n  - name: b\n    replicas: -1\n    run: {command: x}\n",
			"a.yaml:5:15: apps[1].replicas: must be between 0 and 1000, got -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("a.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			var got []string
			for _, p := range Problems(err) {
				got = append(got, p.Error())
				if p.Line < 1 {
					t.Errorf("problem without a line: %v", p)
				}
			}
			for _, g := range got {
				if g == tt.want {
					return
				}
			}
			t.Errorf("want problem\n  %s\ngot\n  %s", tt.want, strings.Join(got, "\n  "))
		})
	}
}

func TestParseReportsAllProblemsOfAFileTogether(t *testing.T) {
	_, err := Parse("a.yaml", []byte("name: Bad\nport: 70000\nreplicas: -1\nrun: {comand: x}\nstrategy: {steps: [50, 10]}\n"))
	ps := Problems(err)
	var fields []string
	for _, p := range ps {
		fields = append(fields, p.Field)
	}
	want := []string{"name", "port", "replicas", "run.command", "run", "strategy.steps[1].weight"}
	if strings.Join(fields, ",") != strings.Join(want, ",") {
		t.Fatalf("fields %v, want %v\n%v", fields, want, err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Line != 1 {
		t.Errorf("errors.As finds the first problem: %v", fe)
	}
}

func TestValidateOnGoValuesHasNoPositions(t *testing.T) {
	a := App{Name: "x", Run: Run{Command: "x"}}
	a.SetDefaults()
	if err := a.Validate(); err != nil {
		t.Fatalf("valid app: %v", err)
	}
	a.Replicas = -1
	a.Source = "x.yaml"
	err := a.Validate()
	if err == nil || err.Error() != "x.yaml: replicas: must be between 0 and 1000, got -1" {
		t.Fatalf("got %v", err)
	}
}

func TestAnOutOfRangeWeightIsReportedOnce(t *testing.T) {
	_, err := Parse("a.yaml", []byte("name: a\nrun: {command: x}\nstrategy: {steps: [1, 150, 100]}\n"))
	ps := Problems(err)
	if len(ps) != 1 || ps[0].Field != "strategy.steps[1].weight" {
		t.Fatalf("want one problem at steps[1], got %v", err)
	}
}
