package spec

import (
	"strings"
	"testing"
)

func TestPrometheusQueriesDefaultToTheDocumentedConvention(t *testing.T) {
	apps, err := Parse("a.yaml", []byte("name: shop\nenvironments: [production, staging]\nkube: {image: 'r/shop:{{.Version}}'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := apps[0]
	if a.Analysis.Prometheus != (PrometheusQueries{}) {
		t.Fatalf("a spec without analysis.prometheus keeps it empty (defaults apply at render time), got %+v", a.Analysis.Prometheus)
	}
	sel := `namespace="ship-staging",ship_dev_app="shop",ship_dev_env="staging",ship_dev_track="canary"`
	for q, want := range map[PromQuery]string{
		PromRequests: `sum(http_requests_total{` + sel + `})`,
		PromErrors:   `sum(http_requests_total{` + sel + `,code=~"5.."})`,
		PromLatency:  `sum by (le) (http_request_duration_seconds_bucket{` + sel + `})`,
	} {
		got, err := a.PrometheusQueryFor(q, "staging", "canary", "v2")
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if got != want {
			t.Errorf("%s:\n got %s\nwant %s", q, got, want)
		}
	}
}

func TestPrometheusQueriesRenderCustomTemplates(t *testing.T) {
	apps, err := Parse("a.yaml", []byte(`name: shop
kube: {image: x, namespace: 'team-{{.App}}'}
analysis:
  prometheus:
    requests: 'sum(app_hits{ns="{{.Namespace}}",app="{{.App}}",env="{{.Env}}",track="{{.Track}}",v="{{.Version}}"})'
`))
	if err != nil {
		t.Fatal(err)
	}
	a := apps[0]
	got, err := a.PrometheusQueryFor(PromRequests, "", "stable", "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if want := `sum(app_hits{ns="team-shop",app="shop",env="production",track="stable",v="1.2.3"})`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	// The queries left out keep their defaults.
	if got, _ := a.PrometheusQueryFor(PromErrors, "", "stable", "1.2.3"); !strings.HasPrefix(got, "sum(http_requests_total{") {
		t.Errorf("errors query without a template: %s", got)
	}
}

func TestPrometheusQueryRefusesValuesThatWouldEndAStringLiteral(t *testing.T) {
	a := App{Name: "shop", Environments: []string{"production"}}
	for _, v := range []string{`v1"} or vector(1) #`, `v\1`, "v\n1", "v'1", "v`1"} {
		if q, err := a.PrometheusQueryFor(PromRequests, "", "canary", v); err == nil {
			t.Errorf("version %q rendered %s, want an error", v, q)
		}
	}
	if _, err := a.PrometheusQueryFor("p99", "", "canary", "v1"); err == nil {
		t.Error("an unknown query name must be an error")
	}
}
