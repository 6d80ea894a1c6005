package slack

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A response_url is a capability: no part of its path may reach a log line
// or a returned error, whichever way the post fails.
func TestFailingResponseURLPostLogsNoPartOfTheURL(t *testing.T) {
	const secretPath = "/commands/T0SECRET/8123456789/s3cr3tT0kenXYZ"

	// A port that refuses connections: bind, note the address, close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String()
	l.Close()

	// A server that never answers in time.
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(hang)

	// A server that redirects to another capability URL.
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1"+secretPath+"-moved", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()

	cases := []struct {
		name    string
		url     string
		timeout time.Duration
	}{
		{"connection refused", refused + secretPath, 5 * time.Second},
		{"timeout", slow.URL + secretPath, 300 * time.Millisecond},
		{"redirect", redirect.URL + secretPath, 5 * time.Second},
		{"bad url", "http://127.0.0.1:0:bad" + secretPath + "?x=%zz", 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			w := &webAPI{
				http:  &http.Client{},
				log:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				stats: &counters{}, maxAttempts: 2, maxWait: 10 * time.Millisecond, baseBackoff: time.Millisecond,
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			err := w.postResponseURL(ctx, tc.url, message{Text: "hi"})
			if err == nil {
				t.Fatal("post succeeded; want a failure")
			}
			out := logs.String()
			if !strings.Contains(out, "slack call") {
				t.Fatalf("failure not logged:\n%s", out)
			}
			for _, part := range []string{"T0SECRET", "8123456789", "s3cr3tT0kenXYZ", "/commands/"} {
				if strings.Contains(out, part) {
					t.Errorf("log carries %q:\n%s", part, out)
				}
				if strings.Contains(err.Error(), part) {
					t.Errorf("error carries %q: %v", part, err)
				}
			}
		})
	}
}
