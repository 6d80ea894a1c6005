package release_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPortsSpeakTheVocabulary keeps the engine and the chat front end off
// the store: they talk to it through ports typed by this package, so a
// second store (or a fake) never drags SQLite in, and the store's schema
// never leaks into the rules of a rollout.
func TestPortsSpeakTheVocabulary(t *testing.T) {
	const mod = "github.com/shipteam/ship/internal/"
	forbidden := map[string][]string{
		"engine":     {"store", "runtime/local", "runtime/kube", "traffic", "api", "chat/slack"},
		"chat/slack": {"store", "runtime/local", "runtime/kube", "traffic", "api"},
		"release":    {"store", "engine", "spec", "runtime"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", mod+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			deps[d] = true
		}
		for _, b := range bad {
			if deps[mod+b] {
				t.Errorf("internal/%s imports internal/%s (directly or not): it must speak the vocabulary's ports", pkg, b)
			}
		}
	}
}
