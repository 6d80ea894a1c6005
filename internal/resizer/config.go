package resizer

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"time"

	"github.com/shipteam/ship/internal/resize"
)

// Config is everything the service can be told at start. DefaultConfig gives
// working values; New refuses a Config whose Validate fails.
type Config struct {
	Addr    string // listen address, HOST:PORT
	Version string // reported in build_info, X-Resizer-Version and ETags

	Workers    int           // images processed at once
	Queue      int           // requests admitted beyond Workers (reading, fetching or waiting)
	RetryAfter time.Duration // advertised in Retry-After when the queue is full

	MaxInputBytes   int64 // request body or fetched source
	MaxInputPixels  int64 // width×height read from the header, before decoding
	MaxOutputPixels int64
	MaxDimension    int // largest w or h a request may ask for
	MaxFrames       int // animated sources: frames kept at most

	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration // whole request including the body
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	RequestTimeout    time.Duration // processing deadline once a worker is held
	ShutdownTimeout   time.Duration // how long in-flight requests get on SIGTERM
	DrainDelay        time.Duration // /readyz reports 503 this long before the listener closes

	SourceTimeout       time.Duration // whole fetch of a url= source, redirects included
	MaxRedirects        int
	AllowedHosts        []string // url= hosts; "*.example.com" matches subdomains; empty = any host
	AllowPrivateSources bool     // let url= reach loopback, private, link-local and metadata addresses

	SigningKey string // when set, GET requests must carry a valid s= signature

	CacheMaxAge time.Duration // Cache-Control max-age of successful image responses
}

// DefaultConfig returns the configuration used when nothing is set.
func DefaultConfig() Config {
	return Config{
		Addr:              "127.0.0.1:8080",
		Version:           "dev",
		Workers:           runtime.NumCPU(),
		Queue:             16,
		RetryAfter:        time.Second,
		MaxInputBytes:     32 << 20,
		MaxInputPixels:    50_000_000,
		MaxOutputPixels:   40_000_000,
		MaxDimension:      8192,
		MaxFrames:         300,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       90 * time.Second,
		RequestTimeout:    20 * time.Second,
		ShutdownTimeout:   30 * time.Second,
		DrainDelay:        0,
		SourceTimeout:     10 * time.Second,
		MaxRedirects:      3,
		CacheMaxAge:       24 * time.Hour,
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("addr %q: want HOST:PORT: %v", c.Addr, err)
	}
	if strings.TrimSpace(c.Version) == "" {
		bad("version: must not be empty")
	}
	if c.Workers < 1 {
		bad("workers: %d, must be at least 1", c.Workers)
	}
	if c.Queue < 0 {
		bad("queue: %d, must not be negative", c.Queue)
	}
	if c.RetryAfter < time.Second {
		bad("retry-after: %v, must be at least 1s", c.RetryAfter)
	}
	if c.MaxInputBytes < 1 {
		bad("max-input-bytes: %d, must be positive", c.MaxInputBytes)
	}
	if c.MaxInputPixels < 1 {
		bad("max-input-pixels: %d, must be positive", c.MaxInputPixels)
	}
	if c.MaxOutputPixels < 1 {
		bad("max-output-pixels: %d, must be positive", c.MaxOutputPixels)
	}
	if c.MaxDimension < 1 || c.MaxDimension > resize.MaxDimension {
		bad("max-dimension: %d, must be in 1..%d", c.MaxDimension, resize.MaxDimension)
	}
	if c.MaxFrames < 1 {
		bad("max-frames: %d, must be positive", c.MaxFrames)
	}
	for name, d := range map[string]time.Duration{
		"read-header-timeout": c.ReadHeaderTimeout, "read-timeout": c.ReadTimeout,
		"write-timeout": c.WriteTimeout, "idle-timeout": c.IdleTimeout,
		"request-timeout": c.RequestTimeout, "shutdown-timeout": c.ShutdownTimeout,
		"source-timeout": c.SourceTimeout,
	} {
		if d <= 0 {
			bad("%s: %v, must be positive", name, d)
		}
	}
	if c.WriteTimeout > 0 && c.WriteTimeout <= c.RequestTimeout {
		// The write deadline runs from the end of the headers: a response
		// that may take RequestTimeout to compute could never be sent.
		bad("write-timeout: %v, must exceed request-timeout (%v)", c.WriteTimeout, c.RequestTimeout)
	}
	if c.DrainDelay < 0 {
		bad("drain-delay: %v, must not be negative", c.DrainDelay)
	}
	if c.CacheMaxAge < 0 {
		bad("cache-max-age: %v, must not be negative", c.CacheMaxAge)
	}
	if c.MaxRedirects < 0 || c.MaxRedirects > 20 {
		bad("max-redirects: %d, must be in 0..20", c.MaxRedirects)
	}
	for _, h := range c.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/:@ ") || strings.Count(h, "*") > 1 ||
			(strings.Contains(h, "*") && !strings.HasPrefix(h, "*.")) {
			bad("allowed-hosts: %q is not a host name or *.domain pattern", h)
		}
	}
	return errors.Join(errs...)
}
