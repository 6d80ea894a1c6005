package spec

import (
	"fmt"
	"strings"
)

// PromQuery names one of the analysis.prometheus queries.
type PromQuery string

const (
	PromRequests PromQuery = "requests"
	PromErrors   PromQuery = "errors"
	PromLatency  PromQuery = "latency"
)

// promKeys are the keys a Prometheus query may use.
var promKeys = []string{"App", "Env", "Namespace", "Track", "Version"}

// PrometheusQueryFor renders query q of the app for one track (stable or
// canary) running version in env ("" = the default environment). An empty
// query in the spec renders the default. Values go inside PromQL string
// literals, so a value holding a quote, a backslash or a control character
// is refused rather than escaped: it could end the literal and change the
// query.
func (a App) PrometheusQueryFor(q PromQuery, env, track, version string) (string, error) {
	if env == "" {
		env = a.DefaultEnv()
	}
	var tmpl, def string
	switch q {
	case PromRequests:
		tmpl, def = a.Analysis.Prometheus.Requests, DefaultPromRequests
	case PromErrors:
		tmpl, def = a.Analysis.Prometheus.Errors, DefaultPromErrors
	case PromLatency:
		tmpl, def = a.Analysis.Prometheus.Latency, DefaultPromLatency
	default:
		return "", fmt.Errorf("app %s: unknown Prometheus query %q", a.Name, q)
	}
	if tmpl == "" {
		tmpl = def
	}
	ns, err := a.NamespaceFor(env)
	if err != nil {
		return "", fmt.Errorf("app %s: %w", a.Name, err)
	}
	d := TemplateData{App: a.Name, Env: env, Namespace: ns, Track: track, Version: version}
	for _, v := range []string{d.App, d.Env, d.Namespace, d.Track, d.Version} {
		if strings.ContainsAny(v, "\"'`\\") || strings.IndexFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
			return "", fmt.Errorf("app %s: %q cannot be put in a PromQL query (quotes, backslashes and control characters are refused)", a.Name, v)
		}
	}
	field := "analysis.prometheus." + string(q)
	return render(field, tmpl, promKeys, d)
}
