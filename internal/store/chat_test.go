package store

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
)

func TestChatMessagePutGetReplaceAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ship.db")
	ctx := context.Background()
	s := open(t, path)
	if _, err := s.ChatMessage(ctx, 7); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ChatMessage of unknown release: %v, want ErrNotFound", err)
	}
	if err := s.PutChatMessage(ctx, ChatMessage{ReleaseID: 0}); err == nil {
		t.Fatal("PutChatMessage accepted release id 0")
	}
	first := ChatMessage{ReleaseID: 7, Origin: "CORIGIN", FollowerChannel: "CORIGIN", FollowerUser: "UALICE", Updated: t0}
	if err := s.PutChatMessage(ctx, first); err != nil {
		t.Fatal(err)
	}
	got, err := s.ChatMessage(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	first.Lines = []string{} // nil is stored as an empty list
	if !reflect.DeepEqual(got, first) {
		t.Fatalf("got %+v, want %+v", got, first)
	}
	second := ChatMessage{ReleaseID: 7, Channel: "CDEPLOYS", TS: "1700000000.000100", Origin: "CORIGIN",
		FollowerChannel: "CORIGIN", FollowerUser: "UALICE",
		Lines: []string{"Promote pressed by alice", `quote " and ✓`}, Updated: t0.Add(1)}
	if err := s.PutChatMessage(ctx, second); err != nil {
		t.Fatal(err)
	}
	if err := s.PutChatMessage(ctx, ChatMessage{ReleaseID: 8, Channel: "COTHER", TS: "1.2"}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2 := open(t, path)
	got, err = s2.ChatMessage(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, second) {
		t.Fatalf("after reopen got %+v, want %+v", got, second)
	}
	other, err := s2.ChatMessage(ctx, 8)
	if err != nil || other.TS != "1.2" || other.Updated.IsZero() {
		t.Fatalf("release 8: %+v, %v (zero Updated must become now)", other, err)
	}
}
