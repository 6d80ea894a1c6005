package resizer

import (
	"net/http"
	"testing"
)

func TestETagMatchAnswers304WithoutEncoding(t *testing.T) {
	counter := &countingPipeline{}
	ts := startServer(t, func(c *Config) { c.AllowPrivateSources = true }, func(p Pipeline) Pipeline { counter.Pipeline = p; return counter })
	src := jpegOf(t, 300, 200)
	u := ts.url + "/v1/resize?w=100&format=jpeg"

	resp, body := do(t, "POST", u, src)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || len(etag) < 10 || etag[0] != '"' {
		t.Fatalf("first: %d ETag %q %s", resp.StatusCode, etag, body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=86400" {
		t.Errorf("Cache-Control %q", cc)
	}
	before := counter.calls.Load()
	for _, inm := range []string{etag, `"other", ` + etag, "W/" + etag, "*"} {
		resp, body = do(t, "POST", u, src, "If-None-Match", inm)
		if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get("ETag") != etag {
			t.Errorf("If-None-Match %s: %d, %d bytes, ETag %q", inm, resp.StatusCode, len(body), resp.Header.Get("ETag"))
		}
	}
	if counter.calls.Load() != before {
		t.Errorf("the pipeline ran for a 304")
	}

	resp, _ = do(t, "POST", u, src, "If-None-Match", `"stale"`)
	if resp.StatusCode != 200 {
		t.Errorf("stale If-None-Match: %d", resp.StatusCode)
	}
	other := map[string]string{
		"other options": "",
		"other source":  "",
		"other accept":  "",
	}
	resp, _ = do(t, "POST", ts.url+"/v1/resize?w=101&format=jpeg", src)
	other["other options"] = resp.Header.Get("ETag")
	resp, _ = do(t, "POST", u, jpegOf(t, 301, 200))
	other["other source"] = resp.Header.Get("ETag")
	resp, _ = do(t, "POST", ts.url+"/v1/resize?w=100", src, "Accept", "image/webp")
	a := resp.Header.Get("ETag")
	resp, _ = do(t, "POST", ts.url+"/v1/resize?w=100", src, "Accept", "image/avif")
	other["other accept"] = resp.Header.Get("ETag")
	if a == other["other accept"] {
		t.Errorf("format=auto: same ETag for WebP and AVIF answers")
	}
	for k, v := range other {
		if v == etag || v == "" {
			t.Errorf("%s: ETag %q, want a different one", k, v)
		}
	}

	// url= sources hash the fetched bytes.
	source := sourceServer(t, src)
	gu := ts.url + "/v1/resize?w=100&format=jpeg&url=" + source + "/a.jpg"
	resp, _ = do(t, "GET", gu, nil)
	getTag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || getTag != etag {
		t.Errorf("GET url=: %d ETag %q, want the POST's %q (same bytes, same options)", resp.StatusCode, getTag, etag)
	}
	resp, _ = do(t, "GET", gu, nil, "If-None-Match", getTag)
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("GET url= with matching If-None-Match: %d", resp.StatusCode)
	}
}

func TestETagChangesWithVersion(t *testing.T) {
	if etagFor("v1", "w=1", []byte("x")) == etagFor("v2", "w=1", []byte("x")) {
		t.Error("two versions share an ETag")
	}
	if etagFor("v1", "w=1", []byte("x")) != etagFor("v1", "w=1", []byte("x")) {
		t.Error("ETag is not deterministic")
	}
}
