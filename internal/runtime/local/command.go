package local

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"

	"github.com/shipteam/ship/internal/spec"
)

// commandFor renders the spec's run section for one instance. It stands in
// for spec.App.RunFor until that lands; relative paths resolve against the
// spec file's folder.
func commandFor(app spec.App, version string, port int, env string, instance int) (cmd string, args, envv []string, dir string, err error) {
	data := map[string]any{"Version": version, "Port": port, "App": app.Name, "Env": env, "Instance": instance}
	render := func(field, s string) string {
		if err != nil || !strings.Contains(s, "{{") {
			return s
		}
		tpl, perr := template.New(field).Option("missingkey=error").Parse(s)
		if perr != nil {
			err = fmt.Errorf("run.%s: %w", field, perr)
			return ""
		}
		var b bytes.Buffer
		if xerr := tpl.Execute(&b, data); xerr != nil {
			err = fmt.Errorf("run.%s: %w", field, xerr)
			return ""
		}
		return b.String()
	}
	base := ""
	if app.Source != "" {
		base = filepath.Dir(app.Source)
	}
	cmd = render("command", app.Run.Command)
	for i, a := range app.Run.Args {
		args = append(args, render("args["+strconv.Itoa(i)+"]", a))
	}
	for k, v := range app.Run.Env {
		envv = append(envv, k+"="+render("env."+k, v))
	}
	dir = render("dir", app.Run.Dir)
	if err != nil {
		return "", nil, nil, "", err
	}
	if dir == "" {
		dir = base
	} else if !filepath.IsAbs(dir) && base != "" {
		dir = filepath.Join(base, dir)
	}
	if strings.Contains(cmd, "/") && !filepath.IsAbs(cmd) && base != "" {
		cmd = filepath.Join(base, cmd)
	}
	return cmd, args, envv, dir, nil
}
