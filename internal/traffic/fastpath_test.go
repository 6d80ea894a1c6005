package traffic

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/shipteam/ship/internal/eventually"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// rawBackend answers every connection with fixed bytes after reading one
// request head, then closes it: for responses net/http would never write.
func rawBackend(t *testing.T, answer string) string { return rawBackendKeep(t, answer, false) }

// rawBackendKeep is rawBackend that, when keep is set, answers every
// request on a connection the same way instead of closing it.
func rawBackendKeep(t *testing.T, answer string, keep bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					for {
						l, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if l == "\r\n" {
							break
						}
					}
					io.WriteString(c, answer)
					if !keep {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// rawClient sends raw requests on one connection and reads the answers
// with net/http's strict parser.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) send(raw string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, raw); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawClient) read(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

func TestFastPathPassesEveryResponseFraming(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 20000) // 320 KB, more than any buffer
	for _, tc := range []struct {
		name    string
		h       http.HandlerFunc
		method  string
		want    string
		trailer string
	}{
		{"small", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }, "GET", "hi", ""},
		{"large", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			io.WriteString(w, big)
		}, "GET", big, ""},
		{"chunked", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum")
			for i := 0; i < 5; i++ {
				fmt.Fprintf(w, "part %d;", i)
				w.(http.Flusher).Flush()
			}
			io.WriteString(w, big)
			w.Header().Set("X-Sum", "42")
		}, "GET", "part 0;part 1;part 2;part 3;part 4;" + big, "42"},
		{"head", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
		}, "HEAD", "", ""},
		{"204", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }, "GET", "", ""},
		{"304", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(304) }, "GET", "", ""},
		{"404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, "GET", "404 page not found\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, spec.App{})
			f.setBackends(runtime.Stable, "v1", newBackend(t, "b", tc.h))
			rc := dialRaw(t, f.endpoint)
			// Twice on one connection: the first answer must end exactly
			// where its framing says.
			for i := 0; i < 2; i++ {
				rc.send(tc.method + " /x HTTP/1.1\r\nHost: app\r\n\r\n")
				resp, body := rc.read(tc.method)
				if body != tc.want {
					t.Fatalf("body %d bytes, want %d", len(body), len(tc.want))
				}
				if resp.Header.Get(TrackHeader) != "stable" || resp.Close {
					t.Fatalf("headers %v close %v", resp.Header, resp.Close)
				}
				if tc.trailer != "" && resp.Trailer.Get("X-Sum") != tc.trailer {
					t.Fatalf("trailer %v", resp.Trailer)
				}
			}
		})
	}
}

func TestFastPathResponseEndingWithConnectionAndInformational(t *testing.T) {
	f := newFixture(t, spec.App{})
	eof := rawBackend(t, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
	f.r.SetBackends("web", "production", runtime.Stable, "v1", []string{eof})
	rc := dialRaw(t, f.endpoint)
	rc.send("GET / HTTP/1.1\r\nHost: app\r\n\r\n")
	resp, body := rc.read("GET")
	if body != "until the end" || !resp.Close {
		t.Fatalf("body %q close %v", body, resp.Close)
	}

	early := rawBackend(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	f.r.SetBackends("web", "production", runtime.Stable, "v1", []string{early})
	code, _, body, err := f.get("/")
	if err != nil || code != 200 || body != "ok" {
		t.Fatalf("after 103: %d %q %v", code, body, err)
	}

	// A HEAD answer that wrongly carries a body: the client gets the head,
	// and the connection is not reused (the body is not read as the next answer).
	headBody := rawBackendKeep(t, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody", true)
	f.r.SetBackends("web", "production", runtime.Stable, "v1", []string{headBody})
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest(http.MethodHead, "http://"+f.endpoint+"/", nil)
		if code, _, _, err := f.do(req); err != nil || code != 200 {
			t.Fatalf("HEAD %d: %d %v", i, code, err)
		}
	}

	bad := rawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok")
	f.r.SetBackends("web", "production", runtime.Stable, "v1", []string{bad})
	code, _, body, err = f.get("/")
	if err != nil || code != 502 || !strings.Contains(body, "bad_gateway") {
		t.Fatalf("conflicting lengths: %d %q %v", code, body, err)
	}
}

func TestConnectionMovesToNetHTTPForRequestsWithBodies(t *testing.T) {
	f := newFixture(t, spec.App{})
	f.setBackends(runtime.Stable, "v1", newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	}))
	rc := dialRaw(t, f.endpoint)
	// Pipelined: a GET (fast path), a POST (hands the connection off with
	// the bytes already read), and another GET, all written at once.
	rc.send("GET /one HTTP/1.1\r\nHost: app\r\n\r\n" +
		"POST /two HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\nhello" +
		"GET /three HTTP/1.1\r\nHost: app\r\n\r\n")
	for _, want := range []string{"GET /one ", "POST /two hello", "GET /three "} {
		resp, body := rc.read(strings.Fields(want)[0])
		if body != want || resp.Header.Get(TrackHeader) != "stable" {
			t.Fatalf("got %q (%v), want %q", body, resp.Header, want)
		}
	}
}

func TestLargeRequestHeadMovesToNetHTTP(t *testing.T) {
	f := newFixture(t, spec.App{})
	f.setBackends(runtime.Stable, "v1", newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, len(r.Header.Get("X-Big")))
	}))
	big := strings.Repeat("x", 3*clientBufSize) // more than the fast path's buffer
	rc := dialRaw(t, f.endpoint)
	rc.send("GET / HTTP/1.1\r\nHost: app\r\nX-Big: " + big + "\r\n\r\nGET / HTTP/1.1\r\nHost: app\r\n\r\n")
	for _, want := range []string{fmt.Sprint(len(big)), "0"} {
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != want {
			t.Fatalf("%d %q, want %q", resp.StatusCode, body, want)
		}
	}
}

func TestClientConnectionCloseIsHonoured(t *testing.T) {
	f := newFixture(t, spec.App{})
	f.setBackends(runtime.Stable, "v1", newBackend(t, "b", nil))
	rc := dialRaw(t, f.endpoint)
	rc.send("GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
	if _, body := rc.read("GET"); body != "b\n" {
		t.Fatalf("body %q", body)
	}
	if n, err := rc.br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after Connection: close (%v %v)", n, err)
	}
}

func TestStaleKeepAliveConnectionToInstanceIsReplaced(t *testing.T) {
	f := newFixture(t, spec.App{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "fresh")
	}))
	srv.Config.IdleTimeout = 20 * time.Millisecond // the instance drops idle connections quickly
	var closed atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	f.r.SetBackends("web", "production", runtime.Stable, "v1", []string{strings.TrimPrefix(srv.URL, "http://")})
	for i := 0; i < 5; i++ {
		code, _, body, err := f.get("/")
		if err != nil || code != 200 || body != "fresh" {
			t.Fatalf("request %d: %d %q %v", i, code, body, err)
		}
		// The instance closes the router's pooled connection before the next request.
		eventually.True(t, 5*time.Second, "instance closing the idle connection", func() bool { return closed.Load() > int64(i) })
	}
}

func TestRequestHeadersAsForwarded(t *testing.T) {
	f := newFixture(t, spec.App{})
	got := make(chan *http.Request, 1)
	f.setBackends(runtime.Stable, "v1", newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		got <- r
	}))
	rc := dialRaw(t, f.endpoint)
	rc.send("GET /p?q=1 HTTP/1.1\r\nHost: shop.example\r\nX-Custom: a\r\nX-Custom: b\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nProxy-Authorization: secret\r\nKeep-Alive: 5\r\n\r\n")
	rc.read("GET")
	r := <-got
	if r.URL.RequestURI() != "/p?q=1" || r.Host != "shop.example" {
		t.Fatalf("target %q host %q", r.URL.RequestURI(), r.Host)
	}
	if v := r.Header.Values("X-Custom"); len(v) != 2 || v[0] != "a" || v[1] != "b" {
		t.Fatalf("X-Custom %v", v)
	}
	if r.Header.Get("X-Forwarded-For") != "127.0.0.1" || r.Header.Get("X-Forwarded-Host") != "shop.example" ||
		r.Header.Get("X-Forwarded-Proto") != "http" {
		t.Fatalf("forwarded %v", r.Header)
	}
	for _, h := range []string{"Forwarded", "Proxy-Authorization", "Keep-Alive"} {
		if r.Header.Get(h) != "" {
			t.Fatalf("%s forwarded: %v", h, r.Header)
		}
	}
}

// FuzzParseRequest checks the fast path's request parser against
// net/http's: whatever the fast path accepts, net/http must read as the
// same bodiless request, so a request can never mean one thing to the
// router and another to the instance.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD /x?y HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-User-ID: 7\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; ship_track=canary\r\nCookie: ship_track=stable\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
		head, err := readHead(br)
		if err != nil {
			return
		}
		var rh reqHead
		if !parseRequest(head, "X-User-ID", "ship_track", &rh) {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("fast path accepted what net/http refuses (%v): %q", err, head)
		}
		// Where the fast path reads a track from the cookie, net/http reads the same.
		if _, ok := trackIndex(cookieTrackName(rh.cookie)); ok && rh.hasCookie {
			if c, err := req.Cookie("ship_track"); err != nil || c.Value != string(rh.cookie) {
				t.Fatalf("cookie: net/http %v %v, fast %q: %q", c, err, rh.cookie, head)
			}
		}
		if req.Method != string(rh.method) || req.Host != string(rh.host) || req.ContentLength > 0 ||
			len(req.TransferEncoding) > 0 || req.Header.Get("X-User-ID") != string(rh.sticky) && len(req.Header.Values("X-User-ID")) < 2 {
			t.Fatalf("disagree: net/http %s %q cl=%d te=%v; fast %s %q: %q", req.Method, req.Host, req.ContentLength, req.TransferEncoding, rh.method, rh.host, head)
		}
	})
}

// FuzzParseResponse: the response parser never panics, and a response it
// accepts has one framing.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
		head, err := readResponseHead(br)
		if err != nil {
			return
		}
		var rs respHead
		if !parseResponse(head, &rs) {
			return
		}
		if rs.chunked && rs.contentLength >= 0 || rs.status < 200 {
			t.Fatalf("accepted %+v from %q", rs, head)
		}
		out := appendResponseHead(nil, head, &rs, "stable", "", false)
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil {
			t.Fatalf("rewritten head unreadable (%v): %q", err, out)
		}
		if resp.StatusCode != rs.status || resp.Header.Get(TrackHeader) != "stable" || resp.Header.Get("Connection") != "" {
			t.Fatalf("rewritten head %q read as %d %v", out, resp.StatusCode, resp.Header)
		}
		if rs.contentLength >= 0 && resp.ContentLength != rs.contentLength && rs.status != 204 && rs.status != 304 {
			t.Fatalf("framing changed: length %d became %d in %q", rs.contentLength, resp.ContentLength, out)
		}
		if rs.chunked && (len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked") {
			t.Fatalf("framing changed: chunked became %v in %q", resp.TransferEncoding, out)
		}
		for _, h := range rs.hopByHop {
			if resp.Header.Get(string(h)) != "" {
				t.Fatalf("hop-by-hop %s passed on: %q", h, out)
			}
		}
	})
}

func TestSlowAndIdleClientsAreCutOff(t *testing.T) {
	r, err := New(Config{ReadHeaderTimeout: 100 * time.Millisecond, IdleTimeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	defer r.Close(ctx)
	app := spec.App{Name: "web"}
	ep, err := r.Listen(ctx, app, "production", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.SetBackends("web", "production", runtime.Stable, "v1", addrs(newBackend(t, "b", nil)))

	closedWithin := func(c *rawClient, d time.Duration) bool {
		c.c.SetReadDeadline(time.Now().Add(d))
		_, err := c.br.ReadByte()
		return err == io.EOF || errors.Is(err, syscall.ECONNRESET)
	}
	// A head that never ends is cut at ReadHeaderTimeout, well before
	// IdleTimeout.
	slow := dialRaw(t, ep)
	slow.send("GET / HTTP/1.1\r\nHost: app\r\n")
	if !closedWithin(slow, time.Second) {
		t.Fatal("slow head not cut off")
	}
	// A kept-alive connection with nothing to do is closed at IdleTimeout.
	idle := dialRaw(t, ep)
	idle.send("GET / HTTP/1.1\r\nHost: app\r\n\r\n")
	idle.read("GET")
	if !closedWithin(idle, 5*time.Second) {
		t.Fatal("idle connection not closed")
	}
}
