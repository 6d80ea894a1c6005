package spec

import (
	"errors"
	"testing"
	"time"
)

// FuzzParse: no spec bytes make Parse panic; every error carries the file
// name and a line; every accepted app passes the position-free Validate,
// so the node-based and value-based checks agree.
func FuzzParse(f *testing.F) {
	f.Add([]byte("name: resizer\nport: 8080\nrun: {command: ./bin/resizer, args: ['--addr=127.0.0.1:{{.Port}}']}\n"))
	f.Add([]byte("apps:\n  - name: a\n    run: {command: x}\n    strategy: {steps: [1, 10%, {weight: 50, pause: 1m}, 100]}\n"))
	f.Add([]byte("x-a: &a {replicas: 2}\n<<: *a\nname: b\nkube: {image: 'r:{{.Version}}', autoscale: {min: 1, max: 2, targetCPU: 50}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		apps, err := Parse("f.yaml", data)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Parse took %v on %d bytes", d, len(data))
		}
		if err != nil {
			ps := Problems(err)
			if len(ps) == 0 {
				t.Fatalf("error without a position: %v", err)
			}
			var joined interface{ Unwrap() []error }
			if errors.As(err, &joined) && len(joined.Unwrap()) != len(ps) {
				t.Fatalf("a joined error is not a *FieldError: %v", err)
			}
			for _, p := range ps {
				if p.File != "f.yaml" || p.Line < 1 {
					t.Fatalf("problem without file and line: %#v", p)
				}
			}
			return
		}
		if len(apps) == 0 {
			t.Fatal("no apps and no error")
		}
		for _, a := range apps {
			if err := a.Validate(); err != nil {
				t.Fatalf("Parse accepted an app Validate refuses: %v\n%s", err, data)
			}
			if a.Run.Command != "" {
				if _, _, _, _, err := a.RunFor("v1", 1, "", 0); err != nil {
					t.Fatalf("RunFor on an accepted app: %v", err)
				}
			}
		}
	})
}
