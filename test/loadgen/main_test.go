package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoadgenCountsRequestsBytesAndErrors(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/fail" {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		w.Write(bytes.Repeat([]byte("x"), len(b)*2))
	}))
	defer srv.Close()
	dir := t.TempDir()
	body := filepath.Join(dir, "a.bin")
	if err := os.WriteFile(body, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := run([]string{"-url", srv.URL + "/a", "-url", srv.URL + "/b", "-body", filepath.Join(dir, "*.bin"), "-c", "3", "-n", "12", "-json", "-label", "two-urls"}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Ops != 12 || r.Requests != 24 || hits.Load() != 24 || r.Errors != 0 {
		t.Fatalf("ops %d requests %d hits %d errors %d; want 12, 24, 24, 0", r.Ops, r.Requests, hits.Load(), r.Errors)
	}
	if r.BytesOut != 20 || r.BytesIn != 10 || r.Label != "two-urls" || r.P99Ms < r.P50Ms {
		t.Fatalf("report %+v", r)
	}
	out.Reset()
	if err := run([]string{"-url", srv.URL + "/fail", "-body", body, "-n", "2", "-json"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Errors != 2 || r.Status["503"] != 2 || !strings.Contains(r.FirstError, "503") {
		t.Fatalf("failing endpoint: %+v", r)
	}
}

func TestLoadgenRunsForADuration(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	var out bytes.Buffer
	start := time.Now()
	if err := run([]string{"-url", srv.URL, "-method", "GET", "-d", "200ms", "-c", "2"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
		t.Fatalf("ran %v for -d 200ms", d)
	}
	if !strings.Contains(out.String(), "ops/s") {
		t.Fatalf("no table: %q", out.String())
	}
}

func TestLoadgenRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-url", "http://127.0.0.1:1", "-c", "0"},
		{"-url", "http://127.0.0.1:1", "-body", "/nonexistent/*.jpg"},
		{"-url", "http://127.0.0.1:1", "-header", "novalue"},
	} {
		if err := run(args, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
