package server

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shipteam/ship/internal/api"
)

// The admin creates a token for alice; alice's deploy is recorded as hers
// (real engine and store); alice may not create or list tokens.
func TestAdminCreatesATokenAndTheNewUsersDeployIsRecordedAsTheirs(t *testing.T) {
	data, apps := t.TempDir(), t.TempDir()
	writeSpec(t, apps, "web.yaml", appSpec(freePort(t)))
	addr, _ := start(t, Config{Addr: "127.0.0.1:0", DataDir: data, AppsDir: apps})
	b, err := os.ReadFile(filepath.Join(data, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admin, _ := api.NewClient(api.ClientConfig{Server: addr, Token: strings.TrimSpace(string(b))})

	nt, err := admin.CreateToken(ctx, "alice", "deployer")
	if err != nil {
		t.Fatal(err)
	}
	if nt.Name != "alice" || !strings.HasPrefix(nt.Token, api.TokenPrefix) {
		t.Fatalf("new token %+v", nt)
	}
	if _, err := admin.CreateToken(ctx, "Alice Smith", "viewer"); apiStatus(err) != http.StatusBadRequest {
		t.Fatalf("bad name: %v, want 400", err)
	}
	alice, _ := api.NewClient(api.ClientConfig{Server: addr, Token: nt.Token})
	if id, err := alice.Whoami(ctx); err != nil || id.Name != "alice" {
		t.Fatalf("whoami %+v %v", id, err)
	}
	r, err := alice.Deploy(ctx, "web", api.DeployRequest{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Actor != "alice" {
		t.Fatalf("deploy recorded actor %q", r.Actor)
	}
	hist, err := admin.History(ctx, "web", "", 10)
	if err != nil || len(hist) != 1 || hist[0].ID != r.ID || hist[0].Actor != "alice" {
		t.Fatalf("history %+v %v", hist, err)
	}

	if _, err := alice.CreateToken(ctx, "mallory", "admin"); apiStatus(err) != http.StatusForbidden {
		t.Fatalf("alice creating a token: %v, want 403", err)
	}
	if _, err := alice.Tokens(ctx); apiStatus(err) != http.StatusForbidden {
		t.Fatalf("alice listing tokens: %v, want 403", err)
	}
	list, err := admin.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ti := range list {
		names = append(names, ti.Name)
		if ti.Created.IsZero() {
			t.Fatalf("token of %s without creation time", ti.Name)
		}
	}
	if strings.Join(names, ",") != "admin,alice" {
		t.Fatalf("tokens %v, want admin,alice (mallory must not exist)", names)
	}
}

func apiStatus(err error) int {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}
