package resizer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Resolver looks up the addresses of a host; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// fetcher downloads url= sources. Every connection, including each redirect
// hop, is checked where it is made: the dialer's Control function sees the
// resolved address just before connect(2), so neither DNS tricks nor
// redirects can reach an address the policy refuses.
type fetcher struct {
	client       *http.Client
	allowedHosts []string
	maxBytes     int64
	timeout      time.Duration
	userAgent    string
}

// fetchConfig configures a fetcher. testPublic lists loopback ip:ports that
// tests treat as public internet hosts (see fetch_test.go); it is never set
// outside tests.
type fetchConfig struct {
	AllowedHosts        []string
	AllowPrivateSources bool
	MaxBytes            int64
	Timeout             time.Duration
	MaxRedirects        int
	Resolver            Resolver
	UserAgent           string
	testPublic          map[netip.AddrPort]bool
}

// forbiddenAddrError is returned by the dial check.
type forbiddenAddrError struct {
	addr   netip.Addr
	reason string
}

func (e *forbiddenAddrError) Error() string {
	return fmt.Sprintf("address %s is %s", e.addr, e.reason)
}

type forbiddenHostError struct{ host string }

func (e *forbiddenHostError) Error() string { return fmt.Sprintf("host %q is not allowed", e.host) }

type badSchemeError struct{ scheme string }

func (e *badSchemeError) Error() string {
	return fmt.Sprintf("scheme %q is not http or https", e.scheme)
}

var errTooManyRedirects = errors.New("too many redirects")

func newFetcher(c fetchConfig) *fetcher {
	resolver := c.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	control := func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("dial check: %w", err)
		}
		if c.AllowPrivateSources || c.testPublic[ap] {
			return nil
		}
		if reason := forbiddenReason(ap.Addr()); reason != "" {
			return &forbiddenAddrError{addr: ap.Addr(), reason: reason}
		}
		return nil
	}
	dialer := &net.Dialer{Timeout: c.Timeout, Control: control}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			ips = []netip.Addr{ip}
		} else if ips, err = resolver.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		var firstErr error
		for _, ip := range ips {
			conn, err := dialer.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
			if err == nil {
				return conn, nil
			}
			if firstErr == nil {
				firstErr = err
			}
			if ctx.Err() != nil {
				break
			}
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("resolve %s: no addresses", host)
		}
		return nil, firstErr
	}
	f := &fetcher{allowedHosts: c.AllowedHosts, maxBytes: c.MaxBytes, timeout: c.Timeout, userAgent: c.UserAgent}
	f.client = &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil, // a proxy would connect on our behalf, past the dial check
			DialContext:           dial,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          64,
			IdleConnTimeout:       30 * time.Second,
			TLSHandshakeTimeout:   c.Timeout,
			ResponseHeaderTimeout: c.Timeout,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > c.MaxRedirects {
				return errTooManyRedirects
			}
			return f.checkURL(req.URL)
		},
	}
	return f
}

// checkURL applies the scheme and host rules; addresses are checked at dial.
func (f *fetcher) checkURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return &badSchemeError{u.Scheme}
	}
	if u.User != nil {
		return &badSchemeError{"with user info"}
	}
	if len(f.allowedHosts) == 0 {
		return nil
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	for _, h := range f.allowedHosts {
		if host == h || (strings.HasPrefix(h, "*.") && strings.HasSuffix(host, h[1:])) {
			return nil
		}
	}
	return &forbiddenHostError{host}
}

// fetch downloads rawURL into memory, at most maxBytes whatever the
// Content-Length says.
func (f *fetcher) fetch(ctx context.Context, rawURL string) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return nil, newError(http.StatusBadRequest, codeInvalidURL, "url=%q is not an absolute http(s) URL", truncate(rawURL, 80))
	}
	if err := f.checkURL(u); err != nil {
		return nil, fetchError(err)
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, newError(http.StatusBadRequest, codeInvalidURL, "url=%q: %v", truncate(rawURL, 80), err)
	}
	req.Header.Set("Accept", "image/avif,image/webp,image/png,image/jpeg,image/gif")
	req.Header.Set("User-Agent", f.userAgent)
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fetchError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &apiError{http.StatusBadGateway, codeSourceStatus,
			fmt.Sprintf("the source answered %d", resp.StatusCode), nil}
	}
	if resp.ContentLength > f.maxBytes {
		return nil, newError(http.StatusRequestEntityTooLarge, codeSourceTooLarge, "the source is larger than %d bytes", f.maxBytes)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBytes+1))
	if err != nil {
		return nil, fetchError(err)
	}
	if int64(len(data)) > f.maxBytes {
		return nil, newError(http.StatusRequestEntityTooLarge, codeSourceTooLarge, "the source is larger than %d bytes", f.maxBytes)
	}
	return data, nil
}

// fetchError maps a fetch failure to the public error.
func fetchError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var (
		fa   *forbiddenAddrError
		fh   *forbiddenHostError
		bs   *badSchemeError
		nerr net.Error
	)
	switch {
	case errors.As(err, &fa):
		return &apiError{http.StatusForbidden, codeForbiddenAddress, "the source resolves to an address that is not allowed (" + fa.reason + ")", err}
	case errors.As(err, &fh):
		return &apiError{http.StatusForbidden, codeForbiddenHost, fmt.Sprintf("host %q is not in the allowed hosts", truncate(fh.host, 80)), err}
	case errors.As(err, &bs):
		return &apiError{http.StatusBadRequest, codeInvalidURL, "only http and https sources are accepted", err}
	case errors.Is(err, errTooManyRedirects):
		return &apiError{http.StatusBadGateway, codeTooManyRedirects, "the source redirected too many times", err}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return &apiError{http.StatusGatewayTimeout, codeSourceTimeout, "the source did not answer in time", err}
	case errors.Is(err, context.Canceled):
		return &apiError{499, "canceled", "the request was canceled", err}
	default:
		return &apiError{http.StatusBadGateway, codeSourceUnreachable, "the source could not be fetched", err}
	}
}

// blocked lists the ranges url= must not reach unless private sources are
// allowed: they reach the machine itself, its network, or cloud metadata.
var blocked = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified/this network"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (cloud metadata)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fc00::/7"), "unique local (private)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// forbiddenReason says why addr may not be fetched from, or "" if it may.
// Addresses that embed an IPv4 address (mapped, NAT64, 6to4) are judged by
// the embedded one.
func forbiddenReason(addr netip.Addr) string {
	addr = addr.Unmap()
	if addr.Is6() {
		b := addr.As16()
		switch {
		case netip.MustParsePrefix("64:ff9b::/96").Contains(addr):
			addr = netip.AddrFrom4([4]byte(b[12:16]))
		case netip.MustParsePrefix("2002::/16").Contains(addr):
			addr = netip.AddrFrom4([4]byte(b[2:6]))
		}
	}
	for _, bl := range blocked {
		if bl.prefix.Contains(addr) {
			return bl.reason
		}
	}
	return ""
}
