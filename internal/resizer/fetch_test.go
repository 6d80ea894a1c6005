package resizer

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDNS resolves the names a test gives it and nothing else, so no
// lookup leaves the machine.
type fakeDNS map[string][]netip.Addr

func (f fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func addrPort(t *testing.T, hostport string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func TestURLSourcesRefuseForbiddenAddresses(t *testing.T) {
	img := jpegOf(t, 120, 80)
	// hits counts requests that reached a loopback server the policy must
	// keep url= away from.
	var hits atomic.Int64
	private := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(img)
	}))
	defer private.Close()
	privateAddr := addrPort(t, private.Listener.Addr().String())

	// public plays a host on the internet: the tests resolve
	// images.example.com to it and tell the dial check to treat its exact
	// address as public. It serves images and redirects.
	public := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/img.jpg":
			w.Write(img)
		case r.URL.Path == "/big":
			// No Content-Length: the limit must hold while streaming.
			for range 100 {
				w.Write(make([]byte, 1024))
				w.(http.Flusher).Flush()
			}
		case r.URL.Path == "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case r.URL.Path == "/404":
			http.NotFound(w, r)
		case r.URL.Path == "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/to/"):
			http.Redirect(w, r, r.URL.Query().Get("u"), http.StatusFound)
		}
	}))
	defer public.Close()
	publicAddr := addrPort(t, public.Listener.Addr().String())
	publicURL := "http://images.example.com:" + strconv.Itoa(int(publicAddr.Port()))
	redirect := func(to string) string { return publicURL + "/to/?u=" + url.QueryEscape(to) }

	dns := fakeDNS{
		"images.example.com":      {publicAddr.Addr()},
		"cdn.images.example.com":  {publicAddr.Addr()},
		"meta.images.example.com": {netip.MustParseAddr("169.254.169.254")},
		"lo.images.example.com":   {netip.MustParseAddr("127.0.0.1")},
		"rebind.example.com":      {netip.MustParseAddr("10.1.2.3")},
		"metadata.example.com":    {netip.MustParseAddr("169.254.169.254")},
		"v6local.example.com":     {netip.MustParseAddr("fd00:ec2::254")},
	}
	newServer := func(allowPrivate bool, hosts ...string) *testServer {
		ts := startServer(t, func(c *Config) {
			c.AllowPrivateSources = allowPrivate
			c.AllowedHosts = hosts
			c.MaxInputBytes = 50 << 10
			c.SourceTimeout = time.Second
		}, nil)
		f := newFetcher(fetchConfig{
			AllowedHosts: hosts, AllowPrivateSources: allowPrivate, MaxBytes: 50 << 10,
			Timeout: time.Second, MaxRedirects: 3, Resolver: dns, UserAgent: "test",
			testPublic: map[netip.AddrPort]bool{publicAddr: true},
		})
		ts.fetcher = f
		return ts
	}
	strict := newServer(false)
	allowList := newServer(false, "images.example.com")
	wildcard := newServer(false, "*.images.example.com")
	open := newServer(true)

	cases := []struct {
		name   string
		ts     *testServer
		src    string
		status int
		code   string
	}{
		{"public host", strict, publicURL + "/img.jpg", 200, ""},
		{"loopback refused", strict, private.URL + "/img.jpg", 403, codeForbiddenAddress},
		{"localhost name refused", strict, "http://[::1]:" + strconv.Itoa(int(privateAddr.Port())) + "/", 403, codeForbiddenAddress},
		{"loopback allowed by flag", open, private.URL + "/img.jpg", 200, ""},
		{"dns to private refused", strict, "http://rebind.example.com/", 403, codeForbiddenAddress},
		{"dns to metadata refused", strict, "http://metadata.example.com/latest/meta-data/", 403, codeForbiddenAddress},
		{"dns to ipv6 ula refused", strict, "http://v6local.example.com/", 403, codeForbiddenAddress},
		{"redirect to loopback refused", strict, redirect(private.URL + "/img.jpg"), 403, codeForbiddenAddress},
		{"redirect to metadata refused", strict, redirect("http://169.254.169.254/latest/meta-data/"), 403, codeForbiddenAddress},
		{"redirect to mapped loopback refused", strict, redirect("http://[::ffff:127.0.0.1]:" + strconv.Itoa(int(privateAddr.Port())) + "/"), 403, codeForbiddenAddress},
		{"allowed host redirects to loopback ip", allowList, redirect(private.URL + "/img.jpg"), 403, codeForbiddenHost},
		{"allowed host redirects to metadata ip", allowList, redirect("http://169.254.169.254/latest/meta-data/"), 403, codeForbiddenHost},
		{"allowed host redirects to allowed name on metadata ip", wildcard, "http://cdn.images.example.com:" + strconv.Itoa(int(publicAddr.Port())) + "/to/?u=" + url.QueryEscape("http://meta.images.example.com/latest/meta-data/"), 403, codeForbiddenAddress},
		{"allowed name on loopback", wildcard, "http://lo.images.example.com:" + strconv.Itoa(int(privateAddr.Port())) + "/img.jpg", 403, codeForbiddenAddress},
		{"redirect to other host refused", allowList, redirect("http://elsewhere.example.net/a.jpg"), 403, codeForbiddenHost},
		{"redirect to file refused", allowList, redirect("file:///etc/passwd"), 400, codeInvalidURL},
		{"allowed host", allowList, publicURL + "/img.jpg", 200, ""},
		{"host not allowed", allowList, "http://elsewhere.example.net/img.jpg", 403, codeForbiddenHost},
		{"wildcard subdomain", wildcard, "http://cdn.images.example.com:" + strconv.Itoa(int(publicAddr.Port())) + "/img.jpg", 200, ""},
		{"wildcard apex not allowed", wildcard, publicURL + "/img.jpg", 403, codeForbiddenHost},
		{"ftp scheme", strict, "ftp://images.example.com/a.jpg", 400, codeInvalidURL},
		{"relative url", strict, "/etc/passwd", 400, codeInvalidURL},
		{"user info", strict, "http://user:pw@images.example.com/", 400, codeInvalidURL},
		{"unknown host", strict, "http://nx.example.org/", 502, codeSourceUnreachable},
		{"source 404", strict, publicURL + "/404", 502, codeSourceStatus},
		{"redirect loop", strict, publicURL + "/loop", 502, codeTooManyRedirects},
		{"source too large while streaming", strict, publicURL + "/big", 413, codeSourceTooLarge},
		{"source too slow", strict, publicURL + "/slow", 504, codeSourceTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hitsBefore := hits.Load()
			start := time.Now()
			resp, body := do(t, "GET", c.ts.url+"/v1/resize?w=60&format=jpeg&url="+url.QueryEscape(c.src), nil)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if c.code != "" {
				if got := errorCode(t, resp, body); got != c.code {
					t.Errorf("code %q, want %q: %s", got, c.code, body)
				}
				if c.ts != open && hits.Load() != hitsBefore {
					t.Errorf("the refused request reached the private server")
				}
			} else if _, w, _ := decoded(t, body); w != 60 {
				t.Errorf("width %d, want 60", w)
			}
			// A refusal by the dial check happens before connect(2): it
			// must not wait for a connection to 169.254.169.254 to time out.
			if c.code == codeForbiddenAddress && time.Since(start) > 500*time.Millisecond {
				t.Errorf("refusal took %v: the address was not refused before connecting", time.Since(start))
			}
		})
	}
	for _, ts := range []*testServer{strict, allowList, wildcard, open} {
		if resp, _ := do(t, "GET", ts.url+"/healthz", nil); resp.StatusCode != 200 {
			t.Errorf("healthz after the attacks: %d", resp.StatusCode)
		}
	}
}

func TestForbiddenReason(t *testing.T) {
	cases := map[string]bool{ // address → refused
		"127.0.0.1": true, "127.8.9.10": true, "10.0.0.1": true, "172.16.5.4": true, "172.32.0.1": false,
		"192.168.1.1": true, "169.254.169.254": true, "100.64.0.1": true, "100.100.100.200": true,
		"0.0.0.0": true, "224.0.0.1": true, "255.255.255.255": true, "8.8.8.8": false, "93.184.216.34": false,
		"::1": true, "::": true, "fe80::1": true, "fd00:ec2::254": true, "ff02::1": true,
		"::ffff:127.0.0.1": true, "::ffff:8.8.8.8": false, "64:ff9b::a9fe:a9fe": true, "2002:7f00:1::": true,
		"2606:4700:4700::1111": false,
	}
	for a, refused := range cases {
		if got := forbiddenReason(netip.MustParseAddr(a)) != ""; got != refused {
			t.Errorf("%s: refused=%v, want %v", a, got, refused)
		}
	}
}
