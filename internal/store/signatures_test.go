package store

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestSeenSignatureIsFreshOnceUntilItExpiresAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ship.db")
	ctx := context.Background()
	mac := []byte{0xa2, 0x11, 0x4d, 0x57}
	expires := t0.Add(5 * time.Minute)
	s := open(t, path)
	seen := func(s *Store, mac []byte, now time.Time) bool {
		t.Helper()
		fresh, err := s.SeenSignature(ctx, mac, now, expires)
		if err != nil {
			t.Fatal(err)
		}
		return fresh
	}
	if !seen(s, mac, t0) {
		t.Fatal("first sighting not fresh")
	}
	if seen(s, mac, t0.Add(time.Minute)) {
		t.Fatal("second sighting fresh")
	}
	if !seen(s, []byte{0xa2, 0x11, 0x4d, 0x58}, t0) {
		t.Fatal("another MAC not fresh")
	}
	s.Close()

	s2 := open(t, path) // a restart of ship
	if seen(s2, mac, expires.Add(-time.Nanosecond)) {
		t.Fatal("after reopen a MAC seen before is fresh again within its lifetime")
	}
	if !seen(s2, mac, expires) {
		t.Fatal("an expired MAC is still refused")
	}
	if _, err := s2.SeenSignature(ctx, nil, t0, expires); err == nil {
		t.Fatal("empty MAC accepted")
	}
}

func TestSeenSignaturePrunesExpiredEntries(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "ship.db"))
	for i := range 100 {
		if _, err := s.SeenSignature(ctx, []byte{byte(i), 1}, t0, t0.Add(time.Duration(i+1)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	rows := func() int {
		t.Helper()
		var n int
		if err := s.queryRow(ctx, `SELECT COUNT(*) FROM chat_signatures`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := rows(); n != 100 {
		t.Fatalf("%d rows, want 100", n)
	}
	// One more request at t0+50s (a prune is due: the last was at t0)
	// drops the 50 entries expired by then (t0+1s … t0+50s) and adds its own.
	if _, err := s.SeenSignature(ctx, []byte{0xff}, t0.Add(50*time.Second), t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := rows(); n != 51 {
		t.Fatalf("%d rows after pruning, want 51", n)
	}
}

// Pruning runs at most once a second; an expired row still in the table
// counts as absent all the same.
func TestSeenSignatureTakesOverAnExpiredRowBeforeItIsPruned(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "ship.db"))
	mac := []byte("mac")
	for i, tc := range []struct {
		now, expires time.Duration
		fresh        bool
	}{
		{0, 100 * time.Millisecond, true},                       // recorded (and a prune ran)
		{50 * time.Millisecond, 300 * time.Millisecond, false},  // live: a replay
		{100 * time.Millisecond, 300 * time.Millisecond, true},  // expired, not pruned yet: fresh
		{200 * time.Millisecond, 900 * time.Millisecond, false}, // the taken-over row is live
	} {
		fresh, err := s.SeenSignature(ctx, mac, t0.Add(tc.now), t0.Add(tc.expires))
		if err != nil || fresh != tc.fresh {
			t.Fatalf("call %d at +%v: fresh %v, %v; want %v", i, tc.now, fresh, err, tc.fresh)
		}
	}
}

func TestSeenSignatureRacingHandlesAgreeOnOneFresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ship.db")
	ctx := context.Background()
	a, b := open(t, path), open(t, path)
	mac := []byte("same mac")
	var wg sync.WaitGroup
	results := make(chan bool, 20)
	for i := range 20 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			fresh, err := s.SeenSignature(ctx, mac, t0, t0.Add(time.Minute))
			if err != nil {
				t.Error(err)
			}
			results <- fresh
		})
	}
	wg.Wait()
	close(results)
	n := 0
	for f := range results {
		if f {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d callers saw the MAC as fresh, want exactly 1", n)
	}
}

// BenchmarkSeenSignature is the replay check's cost per Slack request (one
// write transaction), next to PutChatMessage (one write) as the reference:
//
//	go test -run '^$' -bench 'SeenSignature|PutChatMessage' ./internal/store/
func BenchmarkSeenSignature(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "ship.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := t0
	mac := make([]byte, 32)
	for i := 0; b.Loop(); i++ {
		// About 100 requests a second of fake time: the table holds the
		// last five minutes' worth, as in production.
		now = now.Add(10 * time.Millisecond)
		mac[0], mac[1], mac[2], mac[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		if _, err := s.SeenSignature(ctx, mac, now, now.Add(5*time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPutChatMessage(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "ship.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := 0; b.Loop(); i++ {
		if err := s.PutChatMessage(ctx, ChatMessage{ReleaseID: int64(i%1000 + 1), Channel: "C1", TS: "1.2", Updated: t0}); err != nil {
			b.Fatal(err)
		}
	}
}
