package traffic

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes a Router. Zero values take the defaults below; negative
// values are errors, never a silent fallback.
type Config struct {
	// Logger receives proxy failures and listener errors. Default: discard.
	Logger *slog.Logger
	// Registerer receives the ship_router_* metrics. Nil keeps the metrics
	// in memory only (Sample still works).
	Registerer prometheus.Registerer

	DialTimeout           time.Duration // connecting to an instance; default 2s
	ReadHeaderTimeout     time.Duration // client request headers; default 10s
	IdleTimeout           time.Duration // idle client keep-alive connections; default 120s
	ResponseHeaderTimeout time.Duration // instance response headers; default 0 = no limit
	// MaxRetryBody is the largest request body buffered so that the request
	// can be replayed on another instance; larger bodies are streamed and
	// such requests are not retried. Default 1 MiB.
	MaxRetryBody int64
	// MaxIdleConnsPerInstance bounds idle keep-alive connections kept to one
	// instance. Default 512.
	MaxIdleConnsPerInstance int
	// DownFor is how long an instance whose connection failed is skipped
	// when picking instances (until then, or until SetBackends). Default 2s.
	DownFor time.Duration
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.DialTimeout, 2*time.Second)
	def(&c.ReadHeaderTimeout, 10*time.Second)
	def(&c.IdleTimeout, 120*time.Second)
	def(&c.DownFor, 2*time.Second)
	if c.MaxRetryBody == 0 {
		c.MaxRetryBody = 1 << 20
	}
	if c.MaxIdleConnsPerInstance == 0 {
		c.MaxIdleConnsPerInstance = 512
	}
	return c
}

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"DialTimeout", c.DialTimeout},
		{"ReadHeaderTimeout", c.ReadHeaderTimeout},
		{"IdleTimeout", c.IdleTimeout},
		{"ResponseHeaderTimeout", c.ResponseHeaderTimeout},
		{"DownFor", c.DownFor},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("traffic config: %s must not be negative, got %s", d.name, d.v))
		}
	}
	if c.MaxRetryBody < 0 {
		errs = append(errs, fmt.Errorf("traffic config: MaxRetryBody must not be negative, got %d", c.MaxRetryBody))
	}
	if c.MaxIdleConnsPerInstance < 0 {
		errs = append(errs, fmt.Errorf("traffic config: MaxIdleConnsPerInstance must not be negative, got %d", c.MaxIdleConnsPerInstance))
	}
	return errors.Join(errs...)
}
