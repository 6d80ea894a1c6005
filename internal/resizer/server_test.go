package resizer

import (
	"net/http"

	"github.com/shipteam/ship/internal/resize"
	"testing"
)

func TestResizeOutputsRequestedSizeAndFormat(t *testing.T) {
	ts := startServer(t, nil, nil)
	src := jpegOf(t, 400, 300)
	cases := []struct {
		query         string
		format        string
		width, height int
	}{
		{"w=200&format=jpeg", "jpeg", 200, 150},
		{"h=150&format=jpeg", "jpeg", 200, 150},
		{"w=100&h=100&fit=cover&format=jpeg", "jpeg", 100, 100},
		{"w=100&h=100&fit=cover&gravity=smart&format=jpeg", "jpeg", 100, 100},
		{"w=100&h=50&fit=contain&format=png", "png", 100, 50},
		{"w=100&h=100&fit=inside&format=jpeg", "jpeg", 100, 75},
		{"w=120&h=40&fit=fill&format=png&q=50", "png", 120, 40},
		{"w=64&h=64&format=gif", "gif", 64, 64},
		{"w=80&h=60&format=webp", "webp", 80, 60},
		{"w=80&h=60&format=avif", "avif", 80, 60},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			resp, body := do(t, "POST", ts.url+"/v1/resize?"+c.query, src, "Content-Type", "image/jpeg")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got, want := resp.Header.Get("Content-Type"), "image/"+c.format; got != want {
				t.Errorf("Content-Type %q, want %q", got, want)
			}
			var format string
			var w, h int
			if c.format == "webp" || c.format == "avif" {
				f, pw, ph := probed(t, body)
				format, w, h = string(f), pw, ph
				if format == "heif" {
					format = "avif"
				}
			} else {
				format, w, h = decoded(t, body)
			}
			if format != c.format || w != c.width || h != c.height {
				t.Errorf("got %s %dx%d, want %s %dx%d", format, w, h, c.format, c.width, c.height)
			}
			if resp.Header.Get("X-Image-Width") == "" || resp.Header.Get("X-Resizer-Version") != "test-v1" {
				t.Errorf("missing headers: %v", resp.Header)
			}
		})
	}
}

func TestFormatAutoFollowsAcceptAndAlpha(t *testing.T) {
	ts := startServer(t, nil, nil)
	opaque, alpha := jpegOf(t, 200, 100), pngOf(t, 200, 100, true)
	cases := []struct {
		name, accept string
		src          []byte
		want         string
	}{
		{"avif first", "image/avif,image/webp,*/*", opaque, "image/avif"},
		{"webp when no avif", "image/webp,image/*;q=0.8", opaque, "image/webp"},
		{"avif refused by q=0", "image/avif;q=0, image/webp", opaque, "image/webp"},
		{"jpeg for opaque", "*/*", opaque, "image/jpeg"},
		{"png for alpha", "image/png,image/*", alpha, "image/png"},
		{"no accept header", "", alpha, "image/png"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, "POST", ts.url+"/v1/resize?w=50", c.src, "Accept", c.accept)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("Content-Type"); got != c.want {
				t.Errorf("Content-Type %q, want %q", got, c.want)
			}
			if resp.Header.Get("Vary") != "Accept" {
				t.Errorf("Vary %q, want Accept", resp.Header.Get("Vary"))
			}
			if _, w, _ := probed(t, body); w != 50 {
				t.Errorf("width %d, want 50", w)
			}
		})
	}
}

func TestAnimationKeptOrFirstFrame(t *testing.T) {
	ts := startServer(t, nil, nil)
	src := gifOf(t, 60, 40, 4)
	for _, c := range []struct {
		query string
		pages int
	}{{"w=30&format=gif&anim=keep", 4}, {"w=30&format=gif", 1}, {"w=30&anim=keep", 4}} {
		resp, body := do(t, "POST", ts.url+"/v1/resize?"+c.query, src)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", c.query, resp.StatusCode, body)
		}
		info, err := resize.Probe(body, resize.DefaultLimits())
		if err != nil {
			t.Fatalf("%s: %v", c.query, err)
		}
		if info.Pages != c.pages || info.Width != 30 {
			t.Errorf("%s: %d frames %dpx wide, want %d frames 30px", c.query, info.Pages, info.Width, c.pages)
		}
	}
}

func TestUnknownRouteAndMethodAreJSON(t *testing.T) {
	ts := startServer(t, nil, nil)
	resp, body := do(t, "GET", ts.url+"/nope", nil)
	if resp.StatusCode != 404 || errorCode(t, resp, body) != codeNotFound {
		t.Errorf("unknown route: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "DELETE", ts.url+"/v1/resize", nil)
	if resp.StatusCode != 405 || errorCode(t, resp, body) != codeMethodNotAllowed || resp.Header.Get("Allow") == "" {
		t.Errorf("wrong method: %d %s %v", resp.StatusCode, body, resp.Header)
	}
}

func TestRequestIDHonouredOrGenerated(t *testing.T) {
	ts := startServer(t, nil, nil)
	resp, _ := do(t, "GET", ts.url+"/healthz", nil, "X-Request-ID", "abc-123")
	if got := resp.Header.Get("X-Request-ID"); got != "abc-123" {
		t.Errorf("X-Request-ID %q, want abc-123", got)
	}
	resp, _ = do(t, "GET", ts.url+"/healthz", nil, "X-Request-ID", "bad id with spaces")
	if got := resp.Header.Get("X-Request-ID"); len(got) != 24 {
		t.Errorf("generated X-Request-ID %q, want 24 hex digits", got)
	}
}
