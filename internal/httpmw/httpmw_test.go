package httpmw

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRequestIDKeptOrMade(t *testing.T) {
	var seen string
	h := WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = RequestID(r.Context())
	}))
	for _, tc := range []struct {
		in   string
		keep bool
	}{
		{"abc-123", true},
		{"a.b_c", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"", false},
		{"bad id", false},
		{"evil\r\nSet-Cookie: x", false},
		{"quote\"", false},
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if tc.in != "" {
			req.Header.Set(HeaderRequestID, tc.in)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		got := w.Header().Get(HeaderRequestID)
		if got != seen {
			t.Errorf("%q: echoed %q but the context had %q", tc.in, got, seen)
		}
		if tc.keep && got != tc.in {
			t.Errorf("%q: replaced by %q", tc.in, got)
		}
		if !tc.keep && (got == tc.in || len(got) != 24) {
			t.Errorf("%q: got %q, want a new 24-digit id", tc.in, got)
		}
	}
}

func TestRecorder(t *testing.T) {
	w := httptest.NewRecorder()
	rec := &Recorder{ResponseWriter: w}
	rec.Write([]byte("hello"))
	rec.WriteHeader(http.StatusTeapot) // too late: the first status stays
	rec.Write([]byte("!"))
	if rec.Status != http.StatusOK || rec.Bytes != 6 {
		t.Fatalf("recorded %d %d, want 200 6", rec.Status, rec.Bytes)
	}
	rec2 := &Recorder{ResponseWriter: httptest.NewRecorder()}
	rec2.WriteHeader(http.StatusNotFound)
	if rec2.Status != http.StatusNotFound || rec2.Unwrap() == nil {
		t.Fatalf("recorded %d", rec2.Status)
	}
}
