package store

import (
	"context"
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
