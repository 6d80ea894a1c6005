package enginetest

import (
	"context"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

func TestRunningEngineTakesACanaryToSucceededOnHealthyTraffic(t *testing.T) {
	env := New(t, Options{Traffic: 1000})
	env.StableAt("resizer", "v1")
	r, err := env.Engine.Deploy(context.Background(), Admin, engine.DeployRequest{App: "resizer", Version: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	env.WaitState(r.ID, release.Succeeded)
	if got := env.Runtime.Get("resizer", "production", runtime.Stable).Version; got != "v2" {
		t.Fatalf("stable runs %q, want v2", got)
	}
}

func TestSteppedEngineReachesAStateByStepping(t *testing.T) {
	env := New(t, Options{Stepped: true})
	r, err := env.Engine.Deploy(context.Background(), Admin, engine.DeployRequest{App: "resizer", Version: "v1", Rolling: true})
	if err != nil {
		t.Fatal(err)
	}
	env.WaitState(r.ID, release.Succeeded)
	if got := env.Runtime.Get("resizer", "production", runtime.Stable).Version; got != "v1" {
		t.Fatalf("stable runs %q, want v1", got)
	}
}

func TestAFailingVersionFailsItsRelease(t *testing.T) {
	env := New(t, Options{})
	env.StableAt("resizer", "v1")
	env.Runtime.Mu.Lock()
	env.Runtime.Failing["v2"] = "exit 1"
	env.Runtime.Mu.Unlock()
	r, err := env.Engine.Deploy(context.Background(), Admin, engine.DeployRequest{App: "resizer", Version: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	env.WaitState(r.ID, release.Failed)
}

func TestFailingRequestsAbortTheCanary(t *testing.T) {
	env := New(t, Options{Traffic: 1000})
	env.StableAt("resizer", "v1")
	env.FailRequests("v2", 50)
	r, err := env.Engine.Deploy(context.Background(), Admin, engine.DeployRequest{App: "resizer", Version: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	if r = env.WaitState(r.ID, release.Aborted); r.Reason == "" {
		t.Fatal("aborted without a reason")
	}
}

// The package is for tests only: no program or library file imports it.
func TestOnlyTestFilesImportEnginetest(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, im := range f.Imports {
			if im.Path.Value == `"github.com/shipteam/ship/internal/enginetest"` {
				t.Errorf("%s imports enginetest", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
