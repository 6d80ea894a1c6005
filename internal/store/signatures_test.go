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
		if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM chat_signatures`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := rows(); n != 100 {
		t.Fatalf("%d rows, want 100", n)
	}
	// One more request at t0+50s drops the 50 entries expired by then
	// (expiries t0+1s … t0+50s) and adds its own.
	if _, err := s.SeenSignature(ctx, []byte{0xff}, t0.Add(50*time.Second), t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := rows(); n != 51 {
		t.Fatalf("%d rows after pruning, want 51", n)
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
