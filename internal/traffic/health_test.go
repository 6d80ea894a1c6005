package traffic

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// healthLog records what the router reports about instances.
type healthLog struct {
	mu                    sync.Mutex
	answered, unreachable map[string]int // by app/env/addr
}

func newHealthLog() *healthLog {
	return &healthLog{answered: map[string]int{}, unreachable: map[string]int{}}
}

func (h *healthLog) Answered(app, env, addr string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answered[app+"/"+env+"/"+addr]++
}

func (h *healthLog) Unreachable(app, env, addr string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unreachable[app+"/"+env+"/"+addr]++
}

func (h *healthLog) counts(addr string) (answered, unreachable int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.answered["web/production/"+addr], h.unreachable["web/production/"+addr]
}

// TestProxiedAnswersAndFailedConnectionsAreReportedAtMostOnceASecond: both
// paths (GET: fast path, POST: net/http) report an answer below 500 as
// Answered and a connection that fails as Unreachable, once a second per
// instance at most; an app's own 5xx is neither.
func TestProxiedAnswersAndFailedConnectionsAreReportedAtMostOnceASecond(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			f := newFixture(t, spec.App{})
			h := newHealthLog()
			f.r.ReportHealthTo(h)
			ok := newBackend(t, "ok", nil)
			failing := newBackend(t, "failing", func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "broken", http.StatusInternalServerError)
			})
			send := func() int {
				t.Helper()
				var body io.Reader
				if method == http.MethodPost {
					body = strings.NewReader("x")
				}
				req, _ := http.NewRequest(method, "http://"+f.endpoint+"/", body)
				code, _, _, err := f.do(req)
				if err != nil {
					t.Fatal(err)
				}
				return code
			}

			f.setBackends(runtime.Stable, "v1", ok)
			start := time.Now()
			for time.Since(start) < 1500*time.Millisecond { // a window, not a wait
				if code := send(); code != 200 {
					t.Fatalf("status %d", code)
				}
			}
			if a, u := h.counts(ok.addr()); a < 1 || a > 2 || u != 0 {
				t.Fatalf("over 1.5 s of answers: Answered %d times, Unreachable %d; want 1 or 2, 0", a, u)
			}

			f.setBackends(runtime.Stable, "v1", failing)
			for range 20 {
				if code := send(); code != 500 {
					t.Fatalf("status %d, want the app's 500", code)
				}
			}
			if a, u := h.counts(failing.addr()); a != 0 || u != 0 {
				t.Fatalf("an app's 500s: Answered %d, Unreachable %d; want 0, 0", a, u)
			}

			dead := newBackend(t, "dead", nil)
			f.setBackends(runtime.Stable, "v1", dead)
			send() // opens a keep-alive connection, which then breaks
			dead.srv.Close()
			for range 5 {
				if code := send(); code != http.StatusBadGateway {
					t.Fatalf("status %d, want 502", code)
				}
			}
			if _, u := h.counts(dead.addr()); u != 1 {
				t.Fatalf("5 failed connections within a second: Unreachable %d times, want 1", u)
			}
		})
	}
}

// TestReportingCostsNoAllocation: the per-request check is one atomic load.
func TestReportingCostsNoAllocation(t *testing.T) {
	f := newFixture(t, spec.App{})
	f.r.ReportHealthTo(newHealthLog())
	rt := f.r.route("web", "production", false)
	b := &backend{addr: "127.0.0.1:1"}
	now := time.Now().UnixNano()
	if n := testing.AllocsPerRun(1000, func() { rt.noteAnswered(b, now) }); n != 0 {
		t.Fatalf("noteAnswered allocates %v times", n)
	}
}

func BenchmarkNoteAnswered(b *testing.B) {
	r, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	r.ReportHealthTo(newHealthLog())
	rt := r.route("web", "production", true)
	be := &backend{addr: "127.0.0.1:1"}
	b.RunParallel(func(pb *testing.PB) {
		now := time.Now().UnixNano() // the request's start time, which the router has anyway
		for pb.Next() {
			now += int64(time.Microsecond)
			rt.noteAnswered(be, now)
		}
	})
}
