package resizer

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
)

func TestSignedURLs(t *testing.T) {
	const key = "s3cret"
	ts := startServer(t, func(c *Config) { c.SigningKey = key; c.AllowPrivateSources = true }, nil)
	src := jpegOf(t, 200, 100)
	source := sourceServer(t, src)
	path := "/v1/resize?url=" + url.QueryEscape(source+"/p.jpg") + "&w=50&format=jpeg"
	signed := SignURL(key, path)

	resp, body := do(t, "GET", ts.url+signed, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("good signature: %d %s", resp.StatusCode, body)
	}
	if _, w, _ := decoded(t, body); w != 50 {
		t.Errorf("width %d", w)
	}
	cases := map[string]string{
		"missing":        path,
		"tampered query": strings.Replace(signed, "w=50", "w=51", 1),
		"tampered sig":   signed[:len(signed)-2] + "AA",
		"other key":      SignURL("other", path),
		"other path":     strings.Replace(signed, "/v1/resize", "/v1/presets/x-post", 1),
		"empty sig":      path + "&s=",
	}
	for name, p := range cases {
		resp, body := do(t, "GET", ts.url+p, nil)
		if resp.StatusCode != 403 || errorCode(t, resp, body) != codeBadSignature {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	// Uploads are not signed: the client sends the bytes itself.
	resp, body = do(t, "POST", ts.url+"/v1/resize?w=50", src)
	if resp.StatusCode != 200 {
		t.Errorf("POST with a signing key: %d %s", resp.StatusCode, body)
	}
}

func TestSignURLIsCanonical(t *testing.T) {
	a := SignURL("k", "/v1/resize?w=1&url=x")
	if b := SignURL("k", a); a != b {
		t.Errorf("re-signing changed the URL: %q → %q", a, b)
	}
	if !strings.HasPrefix(a, "/v1/resize?w=1&url=x&s=") {
		t.Errorf("SignURL = %q", a)
	}
	if got := SignURL("k", "/healthz"); !strings.HasPrefix(got, "/healthz?s=") {
		t.Errorf("no query: %q", got)
	}
}

func TestSignCommand(t *testing.T) {
	var out, errb bytes.Buffer
	env := func(k string) string {
		if k == "RESIZER_SIGNING_KEY" {
			return "envkey"
		}
		return ""
	}
	if code := SignCommand([]string{"/v1/resize?w=5"}, env, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if got, want := strings.TrimSpace(out.String()), SignURL("envkey", "/v1/resize?w=5"); got != want {
		t.Errorf("printed %q, want %q", got, want)
	}
	out.Reset()
	SignCommand([]string{"--signing-key", "flagkey", "/x"}, env, &out, &errb)
	if got, want := strings.TrimSpace(out.String()), SignURL("flagkey", "/x"); got != want {
		t.Errorf("flag key: printed %q, want %q", got, want)
	}
	noenv := func(string) string { return "" }
	if code := SignCommand([]string{"/x"}, noenv, &out, &errb); code != 2 {
		t.Errorf("no key: exit %d, want 2", code)
	}
	if code := SignCommand([]string{"no-slash"}, env, &out, &errb); code != 2 {
		t.Errorf("bad path: exit %d, want 2", code)
	}
}
