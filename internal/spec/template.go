package spec

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
)

// TemplateData is what {{.Version}}, {{.Port}}, {{.App}}, {{.Env}} and
// {{.Instance}} refer to in Run and Kube fields.
type TemplateData struct {
	Version  string
	Port     int
	App      string
	Env      string
	Instance int
	// Namespace and Track are for Prometheus queries only.
	Namespace string
	Track     string
}

// Keys each templated field may use. An image or namespace has no port or
// instance, so those keys there are a mistake worth reporting at load time.
var (
	runKeys       = []string{"Version", "Port", "App", "Env", "Instance"}
	imageKeys     = []string{"Version", "App", "Env"}
	namespaceKeys = []string{"App", "Env"}
)

// maxTemplateLen bounds a templated field; specs are short, and this keeps
// rendering trivially cheap.
const maxTemplateLen = 4096

// checkTemplate parses s and returns an error unless it only substitutes
// allowed keys. Only plain {{.Key}} actions are allowed (no if/range/
// functions): specs substitute values, they do not compute, and this keeps
// a hostile spec from making rendering slow or large.
func checkTemplate(s string, keys []string) error {
	if len(s) > maxTemplateLen {
		return fmt.Errorf("longer than %d bytes", maxTemplateLen)
	}
	if !strings.Contains(s, "{{") {
		return nil
	}
	t, err := template.New("").Option("missingkey=error").Parse(s)
	if err != nil {
		msg := err.Error()
		// "template: :1: unexpected ..." -> "unexpected ..."
		if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "template:") {
			msg = msg[i+2:]
		}
		return fmt.Errorf("invalid template: %s", msg)
	}
	allowed := fmt.Sprintf("use {{.%s}}", strings.Join(keys, "}}, {{."))
	for _, tt := range t.Templates() {
		if tt.Tree == nil || tt.Tree.Root == nil {
			continue
		}
		if tt.Name() != "" {
			return fmt.Errorf("templates may not define sub-templates; %s", allowed)
		}
		for _, node := range tt.Tree.Root.Nodes {
			switch n := node.(type) {
			case *parse.TextNode:
			case *parse.ActionNode:
				key, ok := plainField(n)
				if !ok {
					return fmt.Errorf("only plain substitutions are supported, got %s; %s", n, allowed)
				}
				if !contains(keys, key) {
					for _, k := range keys {
						if strings.EqualFold(k, key) {
							return fmt.Errorf("unknown template key .%s; did you mean {{.%s}}?", key, k)
						}
					}
					return fmt.Errorf("unknown template key .%s here; %s", key, allowed)
				}
			default:
				return fmt.Errorf("only plain substitutions are supported, got %s; %s", node, allowed)
			}
		}
	}
	return nil
}

func plainField(n *parse.ActionNode) (string, bool) {
	p := n.Pipe
	if p == nil || len(p.Decl) > 0 || p.IsAssign || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return "", false
	}
	f, ok := p.Cmds[0].Args[0].(*parse.FieldNode)
	if !ok || len(f.Ident) != 1 {
		return "", false
	}
	return f.Ident[0], true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// render executes one checked template with data.
func render(field, s string, keys []string, data TemplateData) (string, error) {
	if err := checkTemplate(s, keys); err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	t, err := template.New(field).Option("missingkey=error").Parse(s)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	return b.String(), nil
}

// baseDir is where relative paths in Run resolve.
func (a App) baseDir() string {
	if a.BaseDir != "" {
		return a.BaseDir
	}
	if a.Source != "" {
		if d, err := filepath.Abs(filepath.Dir(a.Source)); err == nil {
			return d
		}
		return filepath.Dir(a.Source)
	}
	return ""
}

// RunFor renders how the embedded runtime starts instance number instance
// of version listening on port in env ("" = the default environment).
// A Command with a '/' that is not absolute, and a relative Dir, resolve
// against the spec file's directory; a bare command name is left for PATH
// lookup. Dir defaults to the spec's directory. envv holds only the spec's
// variables as sorted KEY=VALUE; the runtime adds its own.
func (a App) RunFor(version string, port int, env string, instance int) (cmd string, args []string, envv []string, dir string, err error) {
	if env == "" {
		env = a.DefaultEnv()
	}
	if !a.HasEnv(env) {
		return "", nil, nil, "", fmt.Errorf("app %s has no environment %q (has %s)", a.Name, env, strings.Join(a.Environments, ", "))
	}
	if version == "" {
		return "", nil, nil, "", fmt.Errorf("app %s: empty version", a.Name)
	}
	if a.Run.Command == "" {
		return "", nil, nil, "", fmt.Errorf("app %s: run.command is not set", a.Name)
	}
	data := TemplateData{Version: version, Port: port, App: a.Name, Env: env, Instance: instance}
	base := a.baseDir()
	if cmd, err = render("run.command", a.Run.Command, runKeys, data); err != nil {
		return "", nil, nil, "", err
	}
	if strings.ContainsRune(cmd, '/') && !filepath.IsAbs(cmd) && base != "" {
		cmd = filepath.Join(base, cmd)
	}
	for i, s := range a.Run.Args {
		r, err := render(fmt.Sprintf("run.args[%d]", i), s, runKeys, data)
		if err != nil {
			return "", nil, nil, "", err
		}
		args = append(args, r)
	}
	keys := make([]string, 0, len(a.Run.Env))
	for k := range a.Run.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r, err := render("run.env."+k, a.Run.Env[k], runKeys, data)
		if err != nil {
			return "", nil, nil, "", err
		}
		envv = append(envv, k+"="+r)
	}
	if dir, err = render("run.dir", a.Run.Dir, runKeys, data); err != nil {
		return "", nil, nil, "", err
	}
	switch {
	case dir == "":
		dir = base
	case !filepath.IsAbs(dir) && base != "":
		dir = filepath.Join(base, dir)
	}
	return cmd, args, envv, dir, nil
}

// ImageFor renders Kube.Image for version in env ("" = the default
// environment); an image with {{.Env}} differs per environment, so every
// caller says which one it runs. An unknown env is an error.
func (a App) ImageFor(version, env string) (string, error) {
	if a.Kube.Image == "" {
		return "", fmt.Errorf("app %s: kube.image is not set", a.Name)
	}
	if version == "" {
		return "", fmt.Errorf("app %s: empty version", a.Name)
	}
	if env == "" {
		env = a.DefaultEnv()
	}
	if !a.HasEnv(env) {
		return "", fmt.Errorf("app %s has no environment %q (has %s)", a.Name, env, strings.Join(a.Environments, ", "))
	}
	return render("kube.image", a.Kube.Image, imageKeys, TemplateData{Version: version, App: a.Name, Env: env})
}

// NamespaceFor renders Kube.Namespace for env ("" = the default environment).
func (a App) NamespaceFor(env string) (string, error) {
	if env == "" {
		env = a.DefaultEnv()
	}
	ns := a.Kube.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	return render("kube.namespace", ns, namespaceKeys, TemplateData{App: a.Name, Env: env})
}

// KubeEnvFor renders Kube.Env for version in env as sorted KEY=VALUE.
func (a App) KubeEnvFor(version, env string) ([]string, error) {
	if env == "" {
		env = a.DefaultEnv()
	}
	keys := make([]string, 0, len(a.Kube.Env))
	for k := range a.Kube.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		r, err := render("kube.env."+k, a.Kube.Env[k], imageKeys, TemplateData{Version: version, App: a.Name, Env: env})
		if err != nil {
			return nil, err
		}
		out = append(out, k+"="+r)
	}
	return out, nil
}

// PortFor is the port users of env connect to: environment i (its index in
// Environments) listens on Port+i, so each environment of an app on one
// machine has its own listener. Port 0 stays 0 (pick a free port), and so
// does an unknown env.
func (a App) PortFor(env string) int {
	if a.Port == 0 {
		return 0
	}
	if env == "" {
		env = a.DefaultEnv()
	}
	for i, e := range a.Environments {
		if e == env {
			return a.Port + i
		}
	}
	return 0
}

// HasEnv reports whether env is one of the app's environments.
func (a App) HasEnv(env string) bool {
	return contains(a.Environments, env)
}

// DefaultEnv is the first environment, or "production" when none is set.
func (a App) DefaultEnv() string {
	if len(a.Environments) == 0 {
		return DefaultEnv
	}
	return a.Environments[0]
}
