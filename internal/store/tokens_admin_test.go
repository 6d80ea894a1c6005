package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestTokensListsNamesAndCreationNeverHashes(t *testing.T) {
	s := open(t, t.TempDir()+"/ship.db")
	ctx := context.Background()
	if got, err := s.Tokens(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v %v", got, err)
	}
	before := time.Now().Add(-2 * time.Second)
	for _, u := range []struct{ name, hash string }{{"admin", "h1"}, {"alice", "h2"}, {"alice", "h3"}} {
		if err := s.PutToken(ctx, u.name, []byte(u.hash)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, ti := range got {
		names[ti.Name]++
		if ti.Created.Before(before) || ti.Created.After(time.Now().Add(2*time.Second)) {
			t.Fatalf("created %v of %s is not now", ti.Created, ti.Name)
		}
	}
	if len(got) != 3 || names["admin"] != 1 || names["alice"] != 2 {
		t.Fatalf("tokens %+v", got)
	}
}

func TestRevokeTokensDeletesEveryTokenOfOneUser(t *testing.T) {
	s := open(t, t.TempDir()+"/ship.db")
	ctx := context.Background()
	for _, u := range []struct{ name, hash string }{{"admin", "h1"}, {"alice", "h2"}, {"alice", "h3"}, {"bob", "h4"}} {
		if err := s.PutToken(ctx, u.name, []byte(u.hash)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.RevokeTokens(ctx, "alice"); err != nil || n != 2 {
		t.Fatalf("revoke alice: %d %v, want 2", n, err)
	}
	for _, h := range []string{"h2", "h3"} {
		if _, err := s.TokenUser(ctx, []byte(h)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token %s still resolves: %v", h, err)
		}
	}
	if u, err := s.TokenUser(ctx, []byte("h4")); err != nil || u != "bob" {
		t.Fatalf("bob's token: %q %v", u, err)
	}
	if n, err := s.RevokeTokens(ctx, "alice"); err != nil || n != 0 {
		t.Fatalf("second revoke: %d %v, want 0", n, err)
	}
}
