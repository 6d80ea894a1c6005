package authz

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no input panics, hangs or yields a config New refuses; every
// error names the file.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("..", "..", "examples", "auth.yaml")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("grants:\n  - role: admin\n    users: [token:a]\n"))
	f.Add([]byte("a: &a [*a, *a]\nroles: *a\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse("f.yaml", b)
		if err != nil {
			if len(err.Error()) < len("f.yaml") {
				t.Fatalf("error without the file: %v", err)
			}
			return
		}
		p, err := New(c)
		if err != nil {
			t.Fatalf("Parse accepted what New refuses: %v", err)
		}
		_ = p.Check(context.Background(), Request{Who: "slack:U1", Action: Deploy, App: "resizer", Env: "production"})
	})
}
