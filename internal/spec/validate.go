package spec

import (
	"fmt"
	"github.com/shipteam/ship/internal/release"
	"math"
	"net"
	"regexp"
	"sort"
	"strings"
)

// MaxReplicas caps replicas: far beyond one machine, and it keeps a typo
// ("replicas: 1000000") from being obeyed.
const MaxReplicas = 1000

var (
	dnsLabelRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	envNameRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	tokenRE        = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$") // RFC 9110 token: header and cookie names
	quantityRE     = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$`)
	cronFieldRE    = regexp.MustCompile(`^[0-9A-Za-z*/,?-]+$`)
)

// ValidName reports whether s is a valid app or environment name: a
// DNS-1123 label (lowercase letters, digits and '-', at most 63).
func ValidName(s string) bool {
	return len(s) <= 63 && dnsLabelRE.MatchString(s)
}

// checker collects validation problems; at says where a field path is in
// the file (falling back to its nearest parent that the file set).
type checker struct {
	file    string
	appName string // FieldError.App: set where no file and line name the app
	at      func(path string) (line, col int)
	errs    []*FieldError
}

func (c *checker) fail(path, format string, args ...any) {
	line, col := c.at(path)
	c.errs = append(c.errs, &FieldError{File: c.file, Line: line, Column: col, App: c.appName, Field: path, Msg: fmt.Sprintf(format, args...)})
}

func noPosition(string) (int, int) { return 0, 0 }

// Validate checks an App built in Go (or after defaults). Problems have no
// line numbers; Parse reports the same problems with positions.
func (a App) Validate() error {
	c := &checker{file: a.Source, at: noPosition}
	c.app(&a, "")
	return joinSorted(c.errs)
}

// app checks every rule; p prefixes field paths ("apps[1]." in a ship.yaml).
func (c *checker) app(a *App, p string) {
	f := func(path string) string { return p + path }

	switch {
	case a.Name == "":
		c.fail(f("name"), "required: a lowercase name such as resizer")
	case !ValidName(a.Name):
		c.fail(f("name"), "must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63), got %q", a.Name)
	}

	switch a.Kind {
	case KindWeb, KindWorker, KindCron:
	default:
		c.fail(f("kind"), "must be one of web, worker, cron, got %q", a.Kind)
	}

	switch {
	case a.Port < 0 || a.Port > 65535:
		c.fail(f("port"), "must be between 0 and 65535 (0 picks a free port), got %d", a.Port)
	case a.Port != 0 && a.Kind != KindWeb && a.Kind != "":
		c.fail(f("port"), "only web apps have a port; remove it for kind %s", a.Kind)
	case a.Port != 0 && a.Port+len(a.Environments)-1 > 65535:
		c.fail(f("port"), "environment %d would listen on port %d, above 65535 (environment i listens on port+i)", len(a.Environments)-1, a.Port+len(a.Environments)-1)
	}

	if a.Listen != "localhost" && net.ParseIP(a.Listen) == nil {
		c.fail(f("listen"), "must be an IP address such as 127.0.0.1 or 0.0.0.0, or localhost, got %q", a.Listen)
	}

	if !strings.HasPrefix(a.HealthPath, "/") || strings.IndexFunc(a.HealthPath, badPathRune) >= 0 {
		c.fail(f("healthPath"), "must be a path starting with / without spaces, got %q", a.HealthPath)
	}

	if a.Replicas < 0 || a.Replicas > MaxReplicas {
		c.fail(f("replicas"), "must be between 0 and %d, got %d", MaxReplicas, a.Replicas)
	}

	if len(a.Environments) == 0 {
		c.fail(f("environments"), "must list at least one environment, e.g. [production]")
	}
	seenEnv := map[string]int{}
	for i, e := range a.Environments {
		path := f(fmt.Sprintf("environments[%d]", i))
		if !ValidName(e) {
			c.fail(path, "must be a DNS-1123 label (lowercase letters, digits and '-'), got %q", e)
		}
		if j, dup := seenEnv[e]; dup {
			c.fail(path, "environment %q is listed twice (also environments[%d])", e, j)
		}
		seenEnv[e] = i
	}

	switch {
	case a.Kind == KindCron && a.Schedule == "":
		c.fail(f("schedule"), "required for cron apps: five cron fields such as \"0 3 * * *\"")
	case a.Kind != KindCron && a.Schedule != "":
		c.fail(f("schedule"), "only cron apps have a schedule")
	case a.Schedule != "":
		fields := strings.Fields(a.Schedule)
		ok := len(fields) == 5
		for _, x := range fields {
			ok = ok && cronFieldRE.MatchString(x)
		}
		if !ok {
			c.fail(f("schedule"), "must be five cron fields such as \"0 3 * * *\", got %q", a.Schedule)
		}
	}

	c.strategy(&a.Strategy, f("strategy"))
	c.analysis(&a.Analysis, f("analysis"))

	if h := a.Stickiness.Header; h != "" && !tokenRE.MatchString(h) {
		c.fail(f("stickiness.header"), "must be an HTTP header name such as X-User-ID, got %q", h)
	}
	if k := a.Stickiness.Cookie; k != "" && !tokenRE.MatchString(k) {
		c.fail(f("stickiness.cookie"), "must be a cookie name such as ship_track, got %q", k)
	}

	c.run(a, f("run"))
	c.kube(a, f("kube"))
}

func badPathRune(r rune) bool { return r <= ' ' || r == 0x7f }

func (c *checker) strategy(s *Strategy, p string) {
	switch s.Type {
	case StrategyCanary, StrategyRolling:
	default:
		c.fail(p+".type", "must be canary or rolling, got %q", s.Type)
	}
	if s.Type == StrategyCanary && len(s.Steps) == 0 {
		c.fail(p+".steps", "a canary needs at least one step, e.g. [1, 10, 50, 100]")
	}
	if len(s.Steps) > 100 {
		c.fail(p+".steps", "at most 100 steps, got %d", len(s.Steps))
	}
	var prev release.Weight
	for i, st := range s.Steps {
		path := fmt.Sprintf("%s.steps[%d]", p, i)
		w := st.Weight
		switch {
		case w <= 0 || w > release.Full:
			// Out of range: reported once, and not compared with the next.
			c.fail(path+".weight", "must be > 0 and <= 100, got %s", w.Number())
		case i > 0 && w <= prev:
			c.fail(path+".weight", "must be greater than the previous step's weight (%s), got %s", prev.Number(), w.Number())
		default:
			prev = w
		}
		if st.Pause < 0 {
			c.fail(path+".pause", "must not be negative, got %s", st.Pause)
		}
	}
	if s.StepTimeout <= 0 {
		c.fail(p+".stepTimeout", "must be more than 0, got %s", s.StepTimeout)
	}
}

func (c *checker) analysis(an *Analysis, p string) {
	if r := an.MaxErrorRate; math.IsNaN(r) || r < 0 || r > 1 {
		c.fail(p+".maxErrorRate", "must be a fraction between 0 and 1 (0.05 = 5%%), got %g", r)
	}
	if an.MinRequests < 1 {
		c.fail(p+".minRequests", "must be at least 1 (no data is never a pass), got %d", an.MinRequests)
	}
	if r := an.MaxP99Ratio; math.IsNaN(r) || math.IsInf(r, 0) || r < 0 {
		c.fail(p+".maxP99Ratio", "must be 0 (not judged) or a positive ratio such as 1.5, got %g", r)
	}
	if an.Interval <= 0 {
		c.fail(p+".interval", "must be more than 0, got %s", an.Interval)
	}
	for _, q := range []struct {
		name, s string
	}{{"requests", an.Prometheus.Requests}, {"errors", an.Prometheus.Errors}, {"latency", an.Prometheus.Latency}} {
		path := p + ".prometheus." + q.name
		if q.s != "" && strings.TrimSpace(q.s) == "" {
			c.fail(path, "must be a PromQL query, or left out for the default")
			continue
		}
		c.template(path, q.s, promKeys)
	}
}

func (c *checker) run(a *App, p string) {
	r := &a.Run
	if r.Command == "" && a.Kube.Image == "" {
		c.fail(p+".command", "required: how to start a version, e.g. ./bin/%s (or set kube.image for Kubernetes)", nameOr(a.Name, "myapp"))
	}
	c.template(p+".command", r.Command, runKeys)
	for i, s := range r.Args {
		c.template(fmt.Sprintf("%s.args[%d]", p, i), s, runKeys)
	}
	c.env(p+".env", r.Env, runKeys)
	c.template(p+".dir", r.Dir, runKeys)
	if r.StartTimeout <= 0 {
		c.fail(p+".startTimeout", "must be more than 0, got %s", r.StartTimeout)
	}
	if r.StopGrace < 0 {
		c.fail(p+".stopGrace", "must not be negative, got %s", r.StopGrace)
	}
}

func nameOr(s, def string) string {
	if ValidName(s) {
		return s
	}
	return def
}

func (c *checker) env(p string, env map[string]string, keys []string) {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := env[k]
		if !envNameRE.MatchString(k) {
			c.fail(p+"."+k, "must be an environment variable name (letters, digits, '_', not starting with a digit), got %q", k)
		}
		c.template(p+"."+k, v, keys)
	}
}

func (c *checker) template(path, s string, keys []string) {
	if strings.ContainsRune(s, 0) {
		c.fail(path, "must not contain NUL bytes")
		return
	}
	if err := checkTemplate(s, keys); err != nil {
		c.fail(path, "%v", err)
	}
}

func (c *checker) kube(a *App, p string) {
	k := &a.Kube
	c.template(p+".image", k.Image, imageKeys)
	if k.Namespace == "" {
		c.fail(p+".namespace", "must not be empty (default %s)", DefaultNamespace)
	} else if err := checkTemplate(k.Namespace, namespaceKeys); err != nil {
		c.fail(p+".namespace", "%v", err)
	} else {
		for _, e := range a.Environments {
			if !ValidName(e) {
				continue // reported at environments
			}
			ns, err := render("kube.namespace", k.Namespace, namespaceKeys, TemplateData{App: a.Name, Env: e})
			if err == nil && !ValidName(ns) {
				c.fail(p+".namespace", "for environment %s gives %q, which is not a DNS-1123 label", e, ns)
				break
			}
		}
	}
	if g := k.Gateway; g != nil {
		if g.Name == "" || len(g.Name) > 253 || !dnsSubdomainRE.MatchString(g.Name) {
			c.fail(p+".gateway.name", "must name a Gateway (a DNS-1123 subdomain), got %q", g.Name)
		}
		if g.Namespace != "" && !ValidName(g.Namespace) {
			c.fail(p+".gateway.namespace", "must be a DNS-1123 label, got %q", g.Namespace)
		}
	}
	if as := k.Autoscale; as != nil {
		if as.Min < 1 || as.Min > MaxReplicas {
			c.fail(p+".autoscale.min", "must be between 1 and %d, got %d", MaxReplicas, as.Min)
		}
		if as.Max < as.Min || as.Max > MaxReplicas {
			c.fail(p+".autoscale.max", "must be between min (%d) and %d, got %d", as.Min, MaxReplicas, as.Max)
		}
		if as.TargetCPU < 1 || as.TargetCPU > 1000 {
			c.fail(p+".autoscale.targetCPU", "must be a percentage between 1 and 1000, got %d", as.TargetCPU)
		}
	}
	if q := k.Resources.CPU; q != "" && !quantityRE.MatchString(q) {
		c.fail(p+".resources.cpu", "must be a Kubernetes quantity such as 500m or 1, got %q", q)
	}
	if q := k.Resources.Memory; q != "" && !quantityRE.MatchString(q) {
		c.fail(p+".resources.memory", "must be a Kubernetes quantity such as 256Mi or 1Gi, got %q", q)
	}
	c.env(p+".env", k.Env, imageKeys)
}
