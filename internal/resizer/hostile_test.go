package resizer

import (
	"bufio"
	"bytes"
	"fmt"
	"github.com/shipteam/ship/internal/eventually"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestHostileBodiesGetClearErrorsAndServiceStaysHealthy(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxInputBytes = 1 << 20 }, nil)
	good := jpegOf(t, 300, 200)
	goodPNG := pngOf(t, 300, 200, false)
	corrupt := append([]byte{}, good...)
	// Scramble the tables and frame header after the SOI marker; bit flips
	// in entropy-coded data alone decode (as noise), which is libvips' choice.
	for i := 4; i < 400; i += 3 {
		corrupt[i] ^= 0x5a
	}
	cases := []struct {
		name        string
		query       string
		body        []byte
		contentType string
		status      int
		code        string
	}{
		{"zero bytes", "w=10", []byte{}, "image/jpeg", 400, codeEmptyBody},
		{"truncated png", "w=10", goodPNG[:len(goodPNG)/2], "image/png", 422, codeCorrupt},
		{"truncated jpeg header", "w=10", good[:40], "image/jpeg", 422, codeCorrupt},
		{"corrupt jpeg", "w=10", corrupt, "image/jpeg", 422, codeCorrupt},
		{"garbage", "w=10", bytes.Repeat([]byte{0xde, 0xad}, 500), "image/jpeg", 415, codeUnsupportedFormat},
		{"png header claiming 100000x100000", "w=10", pngHeaderClaiming(100000, 100000), "image/png", 413, codeTooLarge},
		{"svg", "w=10", []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>`), "image/svg+xml", 415, codeUnsupportedFormat},
		{"svg without xml prolog", "w=10", []byte(`<svg xmlns="http://www.w3.org/2000/svg"></svg>`), "application/octet-stream", 415, codeUnsupportedFormat},
		{"pdf", "w=10", []byte("%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF"), "application/pdf", 415, codeUnsupportedType},
		{"pdf sent as image", "w=10", []byte("%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF"), "image/jpeg", 415, codeUnsupportedFormat},
		{"form content type", "w=10", good, "application/x-www-form-urlencoded", 415, codeUnsupportedType},
		{"json content type", "w=10", good, "application/json", 415, codeUnsupportedType},
		{"declared png, bytes jpeg", "w=10&format=jpeg", good, "image/png", 200, ""},
		{"absurd width", "w=1000000", good, "image/jpeg", 400, codeInvalidOption},
		{"absurd area", "w=8000&h=8000", good, "image/jpeg", 400, codeInvalidOption},
		{"negative width", "w=-5", good, "image/jpeg", 400, codeInvalidOption},
		{"unknown parameter", "width=10", good, "image/jpeg", 400, codeInvalidOption},
		{"body too large", "w=10", make([]byte, 2<<20), "image/jpeg", 413, codeTooLarge},
		{"url with post", "w=10&url=http://x/", good, "image/jpeg", 400, codeBodyAndURL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, "POST", ts.url+"/v1/resize?"+c.query, c.body, "Content-Type", c.contentType)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, truncate(string(body), 200))
			}
			if c.code != "" {
				if got := errorCode(t, resp, body); got != c.code {
					t.Errorf("code %q, want %q", got, c.code)
				}
				if resp.Header.Get("ETag") != "" {
					t.Errorf("an error carries an ETag")
				}
			}
			if resp, _ := do(t, "GET", ts.url+"/healthz", nil); resp.StatusCode != 200 {
				t.Fatalf("healthz after %s: %d", c.name, resp.StatusCode)
			}
		})
	}
	// A chunked body has no Content-Length to refuse early: the limit holds
	// while reading.
	req, _ := http.NewRequest("POST", ts.url+"/v1/resize?w=10", io.MultiReader(bytes.NewReader(good), bytes.NewReader(make([]byte, 2<<20))))
	cresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cbody, _ := io.ReadAll(cresp.Body)
	cresp.Body.Close()
	if cresp.StatusCode != 413 || errorCode(t, cresp, cbody) != codeTooLarge {
		t.Errorf("chunked body over the limit: %d %s", cresp.StatusCode, cbody)
	}

	resp, body := do(t, "GET", ts.url+"/v1/resize?w=10", nil)
	if resp.StatusCode != 400 || errorCode(t, resp, body) != codeMissingSource {
		t.Errorf("GET without url=: %d %s", resp.StatusCode, body)
	}
}

// A client that sends its body a byte at a time holds an admission place
// until the read timeout cuts it off, but never a worker: with one worker,
// another request is served meanwhile.
func TestSlowLorisIsCutOffAndDoesNotHoldTheWorker(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.Workers = 1
		c.Queue = 1
		c.ReadTimeout = 1500 * time.Millisecond
		c.ReadHeaderTimeout = time.Second
	}, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/resize?w=10 HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n")
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a byte every 100ms: far below any useful rate
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte{0xff}); err != nil {
					return
				}
			}
		}
	}()
	eventually.True(t, 2*time.Second, "the slow request to be admitted", func() bool { return ts.pool.admitted() == 1 })

	start := time.Now()
	resp, body := do(t, "POST", ts.url+"/v1/resize?w=50&format=jpeg", jpegOf(t, 200, 100))
	if resp.StatusCode != 200 {
		t.Fatalf("request beside the slow client: %d %s", resp.StatusCode, body)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("request beside the slow client took %v: it waited for the slow one", elapsed)
	}
	if ts.pool.admitted() != 1 {
		t.Errorf("slow client no longer admitted (%d): the test did not overlap", ts.pool.admitted())
	}

	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	sresp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("slow client: no response: %v", err)
	}
	if sresp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("slow client got %d, want 408", sresp.StatusCode)
	}
	if cut := time.Since(start); cut > 3*time.Second {
		t.Errorf("slow client cut off after %v", cut)
	}
	eventually.True(t, 2*time.Second, "the admission place to be released", func() bool { return ts.pool.admitted() == 0 })
}

func TestQueueFullGets503WithRetryAfter(t *testing.T) {
	gated := &gatedPipeline{entered: make(chan struct{}, 4), gate: make(chan struct{})}
	ts := startServer(t, func(c *Config) {
		c.Workers = 1
		c.Queue = 1
		c.RetryAfter = 3 * time.Second
	}, func(p Pipeline) Pipeline { gated.Pipeline = p; return gated })
	src := jpegOf(t, 100, 100)
	type result struct {
		status int
		body   []byte
	}
	results := make(chan result, 2)
	send := func() {
		resp, body := do(t, "POST", ts.url+"/v1/resize?w=20&format=jpeg", src)
		results <- result{resp.StatusCode, body}
	}
	go send()
	<-gated.entered // the worker is busy
	go send()
	eventually.True(t, 2*time.Second, "the second request to queue", func() bool { return ts.pool.admitted() == 2 })
	if v, _ := metricValue(t, ts.url, "resizer_queue_depth"); v != "1" {
		t.Errorf("queue depth metric %q, want 1", v)
	}

	start := time.Now()
	resp, body := do(t, "POST", ts.url+"/v1/resize?w=20&format=jpeg", src)
	if resp.StatusCode != 503 || errorCode(t, resp, body) != codeOverloaded {
		t.Fatalf("third request: %d %s", resp.StatusCode, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "3" {
		t.Errorf("Retry-After %q, want 3", ra)
	}
	if time.Since(start) > 500*time.Millisecond {
		t.Errorf("503 took %v; it must not wait", time.Since(start))
	}
	if resp, _ := do(t, "GET", ts.url+"/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("healthz while full: %d", resp.StatusCode)
	}

	close(gated.gate)
	for range 2 {
		r := <-results
		if r.status != 200 {
			t.Errorf("queued request: %d %s", r.status, r.body)
		}
	}
	if v, _ := metricValue(t, ts.url, "resizer_rejected_total"); v != "1" {
		t.Errorf("rejected_total %q, want 1", v)
	}
}
