package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestTokensListsNamesRolesAndCreationNeverHashes(t *testing.T) {
	s := open(t, t.TempDir()+"/ship.db")
	ctx := context.Background()
	if got, err := s.Tokens(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v %v", got, err)
	}
	before := time.Now().Add(-2 * time.Second)
	for _, u := range []struct{ name, role, hash string }{{"admin", "admin", "h1"}, {"alice", "deployer", "h2"}, {"alice", "deployer", "h3"}} {
		if err := s.PutToken(ctx, u.name, u.role, []byte(u.hash)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, ti := range got {
		names[ti.Name+"/"+ti.Role]++
		if ti.Created.Before(before) || ti.Created.After(time.Now().Add(2*time.Second)) {
			t.Fatalf("created %v of %s is not now", ti.Created, ti.Name)
		}
	}
	if len(got) != 3 || names["admin/admin"] != 1 || names["alice/deployer"] != 2 {
		t.Fatalf("tokens %+v", got)
	}
}

func TestRevokeTokensDeletesEveryTokenOfOneUser(t *testing.T) {
	s := open(t, t.TempDir()+"/ship.db")
	ctx := context.Background()
	for _, u := range []struct{ name, hash string }{{"admin", "h1"}, {"alice", "h2"}, {"alice", "h3"}, {"bob", "h4"}} {
		if err := s.PutToken(ctx, u.name, map[bool]string{true: "admin", false: "deployer"}[u.name == "admin"], []byte(u.hash)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.RevokeTokens(ctx, "alice"); err != nil || n != 2 {
		t.Fatalf("revoke alice: %d %v, want 2", n, err)
	}
	for _, h := range []string{"h2", "h3"} {
		if _, err := s.TokenOwner(ctx, []byte(h)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token %s still resolves: %v", h, err)
		}
	}
	if u, err := s.TokenOwner(ctx, []byte("h4")); err != nil || u.Name != "bob" {
		t.Fatalf("bob's token: %+v %v", u, err)
	}
	if n, err := s.RevokeTokens(ctx, "alice"); err != nil || n != 0 {
		t.Fatalf("second revoke: %d %v, want 0", n, err)
	}
}

func TestTheLastAdminTokenCannotBeRevokedButAnotherAdminsCan(t *testing.T) {
	s := open(t, t.TempDir()+"/ship.db")
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutToken(ctx, "admin", "admin", []byte("h1")))
	must(s.PutToken(ctx, "root2", "admin", []byte("h2")))
	if n, err := s.RevokeTokens(ctx, "admin"); err != nil || n != 1 {
		t.Fatalf("revoke one of two admins: %d %v", n, err)
	}
	if _, err := s.RevokeTokens(ctx, "root2"); !errors.Is(err, ErrLastAdmin) {
		t.Fatalf("revoking the last admin: %v", err)
	}
	if _, err := s.TokenOwner(ctx, []byte("h2")); err != nil {
		t.Fatalf("the refused revoke deleted the token: %v", err)
	}
}

func TestRotateReplacesEveryTokenOfAUserAtOnceKeepingTheRole(t *testing.T) {
	s := open(t, t.TempDir()+"/ship.db")
	ctx := context.Background()
	for _, h := range []string{"a1", "a2"} {
		if err := s.PutToken(ctx, "admin", "admin", []byte(h)); err != nil {
			t.Fatal(err)
		}
	}
	role, n, err := s.RotateTokens(ctx, "admin", []byte("a3"))
	if err != nil || role != "admin" || n != 2 {
		t.Fatalf("rotate: %q %d %v", role, n, err)
	}
	for _, h := range []string{"a1", "a2"} {
		if _, err := s.TokenOwner(ctx, []byte(h)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("old token %s still resolves", h)
		}
	}
	if o, err := s.TokenOwner(ctx, []byte("a3")); err != nil || o.Role != "admin" {
		t.Fatalf("new token: %+v %v", o, err)
	}
	if _, _, err := s.RotateTokens(ctx, "nobody", []byte("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rotate unknown: %v", err)
	}
}

// TestMigrationGivesExistingTokensRolesThatKeepWhatTheyCouldDo opens a
// file made by a ship from before roles (schema 2) with the admin's and a
// user's tokens.
func TestMigrationGivesExistingTokensRolesThatKeepWhatTheyCouldDo(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ship.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`CREATE TABLE schema_version (version INTEGER NOT NULL)`, migrations[0], migrations[1],
		`INSERT INTO schema_version(version) VALUES (2)`,
		`INSERT INTO tokens(hash, name, created) VALUES (x'01', 'admin', 1), (x'02', 'alice', 2)`} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	s := open(t, path)
	for h, want := range map[byte]string{1: "admin", 2: "maintainer"} {
		o, err := s.TokenOwner(ctx, []byte{h})
		if err != nil || o.Role != want {
			t.Fatalf("token %d: %+v %v, want role %s", h, o, err, want)
		}
	}
}
