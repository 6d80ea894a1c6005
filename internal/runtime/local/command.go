package local

import (
	"github.com/shipteam/ship/internal/spec"
)

// commandFor renders the spec's run section for one instance. A spec built
// by hand without environments (the loader always sets them) runs in the
// environment asked for.
func commandFor(app spec.App, version string, port int, env string, instance int) (cmd string, args, envv []string, dir string, err error) {
	if len(app.Environments) == 0 {
		app.Environments = []string{env}
	}
	return app.RunFor(version, port, env, instance)
}
