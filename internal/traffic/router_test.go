package traffic

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/shipteam/ship/internal/eventually"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/shipteam/ship/internal/analysis"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

func TestSplitIsExactOverRealHTTP(t *testing.T) {
	for _, tc := range []struct {
		pct     float64
		n, want int
	}{
		{1, 20000, 200},
		{0.1, 10000, 10},
		{50, 2000, 1000},
	} {
		t.Run(fmt.Sprint(tc.pct), func(t *testing.T) {
			f := newFixture(t, spec.App{})
			f.setBackends(runtime.Stable, "v1", newBackend(t, "s1", nil), newBackend(t, "s2", nil))
			f.setBackends(runtime.Canary, "v2", newBackend(t, "c1", nil))
			f.setWeight(tc.pct)
			got := f.hammer(tc.n, 8)
			if c := got["canary"]; c < tc.want-1 || c > tc.want+1 {
				t.Fatalf("%v%% of %d requests: canary got %d, want %d±1 (all: %v)", tc.pct, tc.n, c, tc.want, got)
			}
			if got["stable"]+got["canary"] != tc.n {
				t.Fatalf("answers %v, want %d in all", got, tc.n)
			}
		})
	}
}

func TestWeightZeroSendsNothingToCanaryAtOnce(t *testing.T) {
	f := newFixture(t, spec.App{})
	f.setBackends(runtime.Stable, "v1", newBackend(t, "s1", nil))
	canary := newBackend(t, "c1", nil)
	f.setBackends(runtime.Canary, "v2", canary)
	f.setWeight(50)
	if got := f.hammer(100, 4); got["canary"] != 50 {
		t.Fatalf("at 50%%: %v", got)
	}
	f.setWeight(0)
	before := canary.hits.Load()
	if got := f.hammer(1000, 4); got["canary"] != 0 {
		t.Fatalf("at 0%%: %v", got)
	}
	if canary.hits.Load() != before {
		t.Fatal("canary instance got requests at weight 0")
	}
	w, ep, err := f.r.Weight(context.Background(), f.app, f.env)
	if err != nil || w != 0 || ep != f.endpoint {
		t.Fatalf("Weight = %v, %q, %v", w, ep, err)
	}
}

func TestWeightAndInstanceChangesUnderLoadLoseNoRequests(t *testing.T) {
	f := newFixture(t, spec.App{})
	s1, s2 := newBackend(t, "s1", nil), newBackend(t, "s2", nil)
	c1, c2 := newBackend(t, "c1", nil), newBackend(t, "c2", nil)
	f.setBackends(runtime.Stable, "v1", s1)
	f.setBackends(runtime.Canary, "v2", c1)

	stop := make(chan struct{})
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var req *http.Request
				if i%2 == 0 {
					req, _ = http.NewRequest(http.MethodGet, "http://"+f.endpoint+"/", nil)
				} else {
					req, _ = http.NewRequest(http.MethodPost, "http://"+f.endpoint+"/", strings.NewReader("payload"))
				}
				code, _, _, err := f.do(req)
				sent.Add(1)
				if err != nil || code != http.StatusOK {
					failed.Add(1)
					t.Errorf("request failed: %d %v", code, err)
				}
			}
		}()
	}
	// Walk the weights and swap instances the way a rollout does: the new
	// instance joins before the old one leaves; the old one stays up.
	for i, w := range []float64{1, 10, 50, 100, 0, 1, 10, 50, 100, 0} {
		f.setWeight(w)
		if i%2 == 0 {
			f.setBackends(runtime.Stable, "v1", s1, s2)
			f.setBackends(runtime.Stable, "v1", s2)
			f.setBackends(runtime.Canary, "v2", c1, c2)
			f.setBackends(runtime.Canary, "v2", c2)
		} else {
			f.setBackends(runtime.Stable, "v1", s2, s1)
			f.setBackends(runtime.Stable, "v1", s1)
			f.setBackends(runtime.Canary, "v2", c2, c1)
			f.setBackends(runtime.Canary, "v2", c1)
		}
		n := sent.Load()
		eventually.True(t, 5*time.Second, "traffic at the new weight", func() bool { return sent.Load() >= n+200 })
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || sent.Load() < 2000 {
		t.Fatalf("%d of %d requests failed", failed.Load(), sent.Load())
	}
	t.Logf("%d requests, 0 failed", sent.Load())
}

func TestStickyHeaderKeepsUserOnOneTrack(t *testing.T) {
	f := newFixture(t, spec.App{Stickiness: spec.Stickiness{Header: "X-User-ID"}})
	f.setBackends(runtime.Stable, "v1", newBackend(t, "s1", nil), newBackend(t, "s2", nil))
	f.setBackends(runtime.Canary, "v2", newBackend(t, "c1", nil))
	f.setWeight(20)

	trackOf := func(user string) string {
		t.Helper()
		first := ""
		for i := 0; i < 5; i++ {
			req, _ := http.NewRequest(http.MethodGet, "http://"+f.endpoint+"/", nil)
			req.Header.Set("X-User-ID", user)
			code, track, _, err := f.do(req)
			if err != nil || code != 200 {
				t.Fatalf("user %s: %d %v", user, code, err)
			}
			if first == "" {
				first = track
			} else if track != first {
				t.Fatalf("user %s moved from %s to %s at a fixed weight", user, first, track)
			}
		}
		return first
	}
	at20 := map[string]string{}
	onCanary := 0
	for i := 0; i < 200; i++ {
		u := fmt.Sprintf("user-%d", i)
		at20[u] = trackOf(u)
		if at20[u] == "canary" {
			onCanary++
		}
	}
	if onCanary < 20 || onCanary > 65 {
		t.Fatalf("%d of 200 users on the canary at 20%%", onCanary)
	}
	f.setWeight(50)
	for u, tr := range at20 {
		if tr == "canary" && trackOf(u) != "canary" {
			t.Fatalf("user %s left the canary when its weight grew", u)
		}
	}
}

func TestStickyCookieKeepsBrowserOnOneTrack(t *testing.T) {
	// GET takes the fast path, POST the net/http one.
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) { testStickyCookie(t, method) })
	}
}

func testStickyCookie(t *testing.T, method string) {
	f := newFixture(t, spec.App{Stickiness: spec.Stickiness{Cookie: "ship_track"}})
	newReq := func() *http.Request {
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader("form")
		}
		req, _ := http.NewRequest(method, "http://"+f.endpoint+"/", body)
		return req
	}
	f.setBackends(runtime.Stable, "v1", newBackend(t, "s1", nil))
	f.setBackends(runtime.Canary, "v2", newBackend(t, "c1", nil))
	f.setWeight(50)

	// A new browser gets a cookie naming the track that answered.
	type browser struct{ cookie, track string }
	var bs []browser
	for i := 0; i < 20; i++ {
		resp, err := f.client.Do(newReq())
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		var c *http.Cookie
		for _, x := range resp.Cookies() {
			if x.Name == "ship_track" {
				c = x
			}
		}
		track := resp.Header.Get(TrackHeader)
		if c == nil || c.Value != track {
			t.Fatalf("response from %s set cookie %v", track, c)
		}
		bs = append(bs, browser{c.Value, track})
	}
	// Returning browsers stay, at any weight that still gives their track traffic.
	for _, w := range []float64{50, 1, 99} {
		f.setWeight(w)
		for _, b := range bs {
			for i := 0; i < 3; i++ {
				req := newReq()
				req.AddCookie(&http.Cookie{Name: "ship_track", Value: b.cookie})
				resp, err := f.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if got := resp.Header.Get(TrackHeader); got != b.track {
					t.Fatalf("weight %v: browser with cookie %s answered by %s", w, b.cookie, got)
				}
				if len(resp.Cookies()) != 0 {
					t.Fatalf("cookie re-set for a browser that already had it: %v", resp.Cookies())
				}
			}
		}
	}
	// At weight 0 the canary cookie is no longer honoured, and is rewritten.
	f.setWeight(0)
	req := newReq()
	req.AddCookie(&http.Cookie{Name: "ship_track", Value: "canary"})
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(TrackHeader); got != "stable" {
		t.Fatalf("canary cookie at weight 0 answered by %s", got)
	}
	if cs := resp.Cookies(); len(cs) != 1 || cs[0].Value != "stable" {
		t.Fatalf("cookie not moved to stable: %v", cs)
	}
}

func TestRetryOnKilledInstanceGivesNoClientErrors(t *testing.T) {
	f := newFixture(t, spec.App{})
	s1, s2 := newBackend(t, "s1", nil), newBackend(t, "s2", nil)
	f.setBackends(runtime.Stable, "v1", s1, s2)
	f.hammer(20, 2) // warm keep-alive connections to both
	s1.srv.Close()  // the instance dies; the router has not been told
	got := f.hammer(500, 4)
	if got["stable"] != 500 {
		t.Fatalf("answers: %v", got)
	}
	// A POST is retried too when its connection was never made.
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest(http.MethodPost, "http://"+f.endpoint+"/", strings.NewReader("hello"))
		if code, _, body, err := f.do(req); err != nil || code != 200 || body != "s2\n" {
			t.Fatalf("POST: %d %q %v", code, body, err)
		}
	}
	// A request is counted just after its answer is written: wait for it.
	st, _ := f.waitSample(func(st, _ analysis.Sample) bool { return st.Requests >= 530 })
	if st.Errors != 0 || st.Requests != 530 {
		t.Fatalf("stable sample %+v, want 530 requests, 0 errors", st)
	}
	if v := counterValue(t, f, "ship_router_retries_total", nil); v < 1 {
		t.Fatalf("retries_total = %v, want at least one", v)
	}
}

// TestRetryFollowsReplacedInstances: a release swaps a track's instances
// while requests are on the old ones, which then stop. The retry must go to
// the current instances, not to the other old ones (seen as 502s in e2e).
func TestRetryFollowsReplacedInstances(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPut} { // fast path, ReverseProxy
		t.Run(method, func(t *testing.T) {
			f := newFixture(t, spec.App{})
			fresh := newBackend(t, "fresh", nil)
			var old *testBackend
			old = newBackend(t, "old", func(w http.ResponseWriter, r *http.Request) {
				// The release replaces this instance now, and it goes away
				// without answering.
				f.setBackends(runtime.Stable, "v2", fresh)
				old.srv.CloseClientConnections()
				panic(http.ErrAbortHandler)
			})
			f.setBackends(runtime.Stable, "v1", old)
			var body io.Reader
			if method == http.MethodPut {
				body = strings.NewReader("x")
			}
			req, _ := http.NewRequest(method, "http://"+f.endpoint+"/", body)
			code, _, got, err := f.do(req)
			if err != nil || code != http.StatusOK || got != "fresh\n" {
				t.Fatalf("%s: %d %q %v, want 200 from the new instance", method, code, got, err)
			}
		})
	}
}

func TestRetryCrossesToOtherTrackWhenTrackIsDown(t *testing.T) {
	f := newFixture(t, spec.App{})
	s1 := newBackend(t, "s1", nil)
	c1 := newBackend(t, "c1", nil)
	f.setBackends(runtime.Stable, "v1", s1)
	f.setBackends(runtime.Canary, "v2", c1)
	f.setWeight(10)
	c1.srv.Close()
	got := f.hammer(200, 2)
	if got["stable"] != 200 {
		t.Fatalf("answers %v, want all from stable", got)
	}
}

func TestBadGatewayWhenEveryInstanceFails(t *testing.T) {
	f := newFixture(t, spec.App{})
	s1, c1 := newBackend(t, "s1", nil), newBackend(t, "c1", nil)
	f.setBackends(runtime.Stable, "v1", s1)
	f.setBackends(runtime.Canary, "v2", c1)
	s1.srv.Close()
	c1.srv.Close()
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		var reqBody io.Reader
		if method == http.MethodPost {
			reqBody = strings.NewReader("x")
		}
		req, _ := http.NewRequest(method, "http://"+f.endpoint+"/", reqBody)
		code, _, body, err := f.do(req)
		if err != nil || code != http.StatusBadGateway {
			t.Fatalf("%s: %d %v", method, code, err)
		}
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != "bad_gateway" {
			t.Fatalf("%s body %q", method, body)
		}
	}
	st, ca := f.waitSample(func(st, ca analysis.Sample) bool { return st.Requests+ca.Requests >= 2 })
	if st.Errors+ca.Errors != 2 || st.Requests+ca.Requests != 2 {
		t.Fatalf("samples %+v %+v, want 2 errors in all", st, ca)
	}
	if v := counterValue(t, f, "ship_router_requests_total", map[string]string{"code": "error"}); v != 2 {
		t.Fatalf("requests_total{code=error} = %v, want 2", v)
	}
}

func TestNonIdempotentRequestIsNotRetriedAfterItWasSent(t *testing.T) {
	f := newFixture(t, spec.App{})
	// s1 accepts the connection and reads the request, then drops it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(c).ReadString('\n')
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	s2 := newBackend(t, "s2", nil)
	f.r.SetBackends("web", "production", runtime.Stable, "v1", []string{ln.Addr().String()})
	req, _ := http.NewRequest(http.MethodPost, "http://"+f.endpoint+"/", strings.NewReader("charge card"))
	f.r.SetBackends("web", "production", runtime.Stable, "v1", []string{ln.Addr().String(), s2.addr()})
	// Round robin starts at the second instance: send two so one hits ln.
	codes := []int{}
	for i := 0; i < 2; i++ {
		req, _ = http.NewRequest(http.MethodPost, "http://"+f.endpoint+"/", strings.NewReader("charge card"))
		code, _, _, err := f.do(req)
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, code)
	}
	if !(codes[0] == 502 || codes[1] == 502) || s2.hits.Load() != 1 {
		t.Fatalf("codes %v, s2 hits %d: a POST that reached an instance was resent", codes, s2.hits.Load())
	}
}

func TestNoBackendsAnswers503JSON(t *testing.T) {
	f := newFixture(t, spec.App{})
	code, _, body, err := f.get("/")
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"no_backends"`) {
		t.Fatalf("%d %q %v", code, body, err)
	}
}

func TestMetricsAndSampleCountWhatWasSent(t *testing.T) {
	f := newFixture(t, spec.App{})
	var n atomic.Int64
	f.setBackends(runtime.Stable, "v1", newBackend(t, "s1", nil))
	f.setBackends(runtime.Canary, "v2", newBackend(t, "c1", func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 4 {
		case 0:
			w.WriteHeader(http.StatusInternalServerError)
		case 1:
			w.WriteHeader(http.StatusNotFound)
		default:
			io.WriteString(w, "ok")
		}
	}))
	f.setWeight(10)
	var codes = map[int]int{}
	var tracks = map[string]int{}
	for i := 0; i < 1000; i++ {
		code, track, _, err := f.get("/")
		if err != nil {
			t.Fatal(err)
		}
		codes[code]++
		tracks[track]++
	}
	st, ca := f.waitSample(func(st, ca analysis.Sample) bool {
		return st.Counts[len(st.Counts)-1]+ca.Counts[len(ca.Counts)-1] >= 1000
	})
	if st.Version != "v1" || ca.Version != "v2" {
		t.Fatalf("versions %q %q", st.Version, ca.Version)
	}
	if st.Requests != int64(tracks["stable"]) || ca.Requests != int64(tracks["canary"]) || ca.Requests != 100 {
		t.Fatalf("sample requests %d/%d, sent %v", st.Requests, ca.Requests, tracks)
	}
	if st.Errors != 0 || ca.Errors != int64(codes[500]) || ca.Errors != 25 {
		t.Fatalf("sample errors %d/%d, 500s sent %d", st.Errors, ca.Errors, codes[500])
	}
	for _, s := range []struct {
		name string
		v    int64
		c    []int64
	}{{"stable", st.Requests, st.Counts}, {"canary", ca.Requests, ca.Counts}} {
		last := s.c[len(s.c)-1]
		if last != s.v || s.c[0] > last {
			t.Fatalf("%s histogram %v vs %d requests", s.name, s.c, s.v)
		}
	}
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"track": "stable", "version": "v1", "code": "2xx"}, float64(tracks["stable"])},
		{map[string]string{"track": "canary", "version": "v2", "code": "2xx"}, 50},
		{map[string]string{"track": "canary", "version": "v2", "code": "4xx"}, 25},
		{map[string]string{"track": "canary", "version": "v2", "code": "5xx"}, 25},
	} {
		if v := counterValue(t, f, "ship_router_requests_total", c.labels); v != c.want {
			t.Errorf("requests_total%v = %v, want %v", c.labels, v, c.want)
		}
	}
	if v := histCount(t, f, map[string]string{"track": "canary", "version": "v2"}); v != 100 {
		t.Errorf("duration histogram count for canary = %d, want 100", v)
	}
	// A new canary version starts from zero.
	f.setBackends(runtime.Canary, "v3", newBackend(t, "c3", nil))
	if _, ca, _ := f.r.Sample(context.Background(), "web", "production"); ca.Version != "v3" || ca.Requests != 0 {
		t.Fatalf("new version sample %+v", ca)
	}
}

func TestCloseDrainsInFlightRequests(t *testing.T) {
	// GET takes the fast path, POST the net/http one.
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) { testCloseDrains(t, method) })
	}
}

func testCloseDrains(t *testing.T, method string) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	reg := newFixture(t, spec.App{})
	f := reg
	f.setBackends(runtime.Stable, "v1", newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "done")
	}))
	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		var reqBody io.Reader
		if method == http.MethodPost {
			reqBody = strings.NewReader("x")
		}
		req, _ := http.NewRequest(method, "http://"+f.endpoint+"/", reqBody)
		code, _, body, err := f.do(req)
		res <- result{code, body, err}
	}()
	<-started
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- f.r.Close(ctx)
	}()
	// New connections are refused once Close has begun, while the slow request is still held.
	eventually.True(t, 5*time.Second, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", f.endpoint, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v with a request in flight", err)
	default:
	}
	close(release)
	r := <-res
	if r.err != nil || r.code != 200 || r.body != "done" {
		t.Fatalf("in-flight request: %+v", r)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := f.r.Listen(context.Background(), f.app, "staging", "127.0.0.1:0"); err == nil {
		t.Fatal("Listen after Close succeeded")
	}
}

func TestStreamingResponseIsFlushedAsWritten(t *testing.T) {
	f := newFixture(t, spec.App{})
	release := make(chan struct{})
	defer close(release)
	f.setBackends(runtime.Stable, "v1", newBackend(t, "sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	// Both paths stream: without Accept the GET takes the fast path, an
	// EventSource's Accept sends it to net/http.
	for _, accept := range []string{"", "text/event-stream"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+f.endpoint+"/events", nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != "data: first\n" {
			t.Fatalf("accept %q: first event %q %v", accept, line, err)
		}
	}
}

func TestUpgradeIsProxied(t *testing.T) {
	f := newFixture(t, spec.App{})
	f.setBackends(runtime.Stable, "v1", newBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want upgrade", 400)
			return
		}
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "echo")
		w.WriteHeader(http.StatusSwitchingProtocols)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo: " + line)
		brw.Flush()
	}))
	c, err := net.Dial("tcp", f.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answer %v %v", resp, err)
	}
	fmt.Fprintf(c, "hello\n")
	if line, err := br.ReadString('\n'); err != nil || line != "echo: hello\n" {
		t.Fatalf("after upgrade: %q %v", line, err)
	}
}

func TestForwardedHeadersAndHost(t *testing.T) {
	f := newFixture(t, spec.App{})
	got := make(chan http.Header, 1)
	hosts := make(chan string, 1)
	f.setBackends(runtime.Stable, "v1", newBackend(t, "h", func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		hosts <- r.Host
	}))
	req, _ := http.NewRequest(http.MethodGet, "http://"+f.endpoint+"/", nil)
	req.Host = "shop.example"
	req.Header.Set("X-Forwarded-For", "6.6.6.6") // spoofed: the router is the edge
	if code, _, _, err := f.do(req); err != nil || code != 200 {
		t.Fatal(code, err)
	}
	h := <-got
	if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" {
		t.Fatalf("forwarded headers %v", h)
	}
	if host := <-hosts; host != "shop.example" {
		t.Fatalf("Host %q", host)
	}
}

func TestListenIsIdempotent(t *testing.T) {
	f := newFixture(t, spec.App{})
	ep, err := f.r.Listen(context.Background(), f.app, f.env, "127.0.0.1:0")
	if err != nil || ep != f.endpoint {
		t.Fatalf("second Listen: %q %v, first %q", ep, err, f.endpoint)
	}
	if err := f.r.SetWeight(context.Background(), f.app, f.env, 10100); err == nil {
		t.Fatal("weight 101 accepted")
	}
}

// counterValue sums the counter samples of name whose labels include want.
func counterValue(t *testing.T, f *fixture, name string, want map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, m := range gather(t, f, name) {
		if match(m, want) {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func histCount(t *testing.T, f *fixture, want map[string]string) uint64 {
	t.Helper()
	var sum uint64
	for _, m := range gather(t, f, "ship_router_request_duration_seconds") {
		if match(m, want) {
			sum += m.GetHistogram().GetSampleCount()
		}
	}
	return sum
}

func gather(t *testing.T, f *fixture, name string) []*dto.Metric {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

func match(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// waitSample polls Sample until cond holds (a request is counted just after
// its answer reaches the client) or fails the test after a deadline.
func (f *fixture) waitSample(cond func(st, ca analysis.Sample) bool) (st, ca analysis.Sample) {
	f.t.Helper()
	eventually.True(f.t, 5*time.Second, "samples", func() bool {
		var err error
		st, ca, err = f.r.Sample(context.Background(), f.app.Name, f.env)
		if err != nil {
			f.t.Fatal(err)
		}
		return cond(st, ca)
	})
	return st, ca
}

func TestRoutersShareARegistryAndWorkBeforeListen(t *testing.T) {
	reg := prometheus.NewRegistry()
	r1, err := New(Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := New(Config{Registerer: reg})
	if err != nil {
		t.Fatalf("second router on one registry: %v", err)
	}
	ctx := context.Background()
	defer r1.Close(ctx)
	defer r2.Close(ctx)
	app := spec.App{Name: "early"}
	// The engine may set weights and the runtime instances before the
	// listener exists (e.g. after a restart).
	r2.SetBackends("early", "production", runtime.Stable, "v1", addrs(newBackend(t, "s", nil)))
	if err := r2.SetWeight(ctx, app, "production", 250); err != nil {
		t.Fatal(err)
	}
	if w, ep, err := r2.Weight(ctx, app, "production"); w != 250 || ep != "" || err != nil {
		t.Fatalf("Weight before Listen = %v %q %v", w, ep, err)
	}
	ep, err := r2.Listen(ctx, app, "production", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + ep + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if st, ca, err := r1.Sample(ctx, "unknown", "production"); err != nil || st.Requests != 0 || ca.Requests != 0 || len(st.Bounds) == 0 {
		t.Fatalf("unknown app sample %+v %+v %v", st, ca, err)
	}
}
