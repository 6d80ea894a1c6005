package kube

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// deadlineRecorder is an API server that knows nothing (every request is
// 404 Not Found) and records the deadline each request was sent with:
// client-go sends a request with the context its caller passed.
type deadlineRecorder struct {
	mu   sync.Mutex
	reqs []string
	dls  []time.Time
}

func (d *deadlineRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	dl, _ := req.Context().Deadline()
	d.mu.Lock()
	d.reqs = append(d.reqs, req.Method+" "+req.URL.Path)
	d.dls = append(d.dls, dl)
	d.mu.Unlock()
	body := `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`
	return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
}

func removeRuntime(t *testing.T) (*Runtime, *deadlineRecorder, spec.App) {
	t.Helper()
	rec := &deadlineRecorder{}
	rt, err := New(Config{RestConfig: &rest.Config{Host: "https://127.0.0.1:1", Transport: rec}})
	if err != nil {
		t.Fatal(err)
	}
	apps, err := spec.Parse("rm.yaml", []byte("name: rm\nkube:\n  image: registry.example/rm:{{.Version}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	return rt, rec, apps[0]
}

// TestRemoveKeepsTheCallersDeadline: the caller's ctx owns a Remove's
// deadline (runtime.Runtime.Remove). The engine gives each removal two
// minutes; the adapter used to replace that with a detached 30 s of its
// own, so a removal was cut at 30 s whatever the caller gave it.
func TestRemoveKeepsTheCallersDeadline(t *testing.T) {
	rt, rec, app := removeRuntime(t)
	want := time.Now().Add(5 * time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), want)
	defer cancel()
	if err := rt.Remove(ctx, app, "", runtime.Stable); err != nil {
		t.Fatal(err)
	}
	if len(rec.reqs) != 2 { // the Deployment and the autoscaler
		t.Fatalf("requests %q, want the two DELETEs", rec.reqs)
	}
	for i, dl := range rec.dls {
		if !dl.Equal(want) {
			t.Errorf("%s sent with deadline %s, want the caller's %s (in %s)", rec.reqs[i], dl.Format(time.RFC3339), want.Format(time.RFC3339), time.Until(dl).Round(time.Second))
		}
	}
}

// TestRemoveHonoursAnEndedContext: a Remove whose ctx has already ended
// sends nothing and says why.
func TestRemoveHonoursAnEndedContext(t *testing.T) {
	rt, rec, app := removeRuntime(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := rt.Remove(ctx, app, "", runtime.Canary)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Remove with an ended ctx: %v, want context.Canceled", err)
	}
	if len(rec.reqs) != 0 {
		t.Errorf("requests sent with an ended ctx: %q", rec.reqs)
	}
}
