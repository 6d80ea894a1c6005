// Command testapp is the small HTTP server the end-to-end and runtime tests
// deploy through ship. Its misbehaviour is chosen by flags, env or by words in
// the version name ("fail50", "unhealthy", "crash", "slow") so a test can
// deploy a bad version through ship without editing any spec. It must stay
// tiny and dependency-free: it is built from source in every test binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	addr         string
	version      string
	failRate     float64
	neverHealthy bool
	exitAtOnce   bool
	slow         time.Duration
	readyAfter   time.Duration
	ignoreTerm   bool
}

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(2)
	}
	if cfg.exitAtOnce {
		fmt.Fprintf(os.Stderr, "testapp %s: crashing at once as asked\n", cfg.version)
		os.Exit(3)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func parseConfig(args []string, getenv func(string) string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("testapp", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.addr, "addr", getenv("TESTAPP_ADDR"), "listen address host:port")
	fs.StringVar(&cfg.version, "version-name", getenv("TESTAPP_VERSION"), "version reported in answers")
	fs.Float64Var(&cfg.failRate, "fail-rate", 0, "fraction of / requests answered 500 (exact, deterministic)")
	fs.BoolVar(&cfg.neverHealthy, "never-healthy", false, "answer /healthz with 503 forever")
	fs.BoolVar(&cfg.exitAtOnce, "exit-at-once", false, "exit with status 3 at once")
	fs.DurationVar(&cfg.slow, "slow", 0, "latency added to /")
	fs.BoolVar(&cfg.ignoreTerm, "ignore-term", false, "ignore SIGTERM (to test the stop grace and SIGKILL)")
	fs.DurationVar(&cfg.readyAfter, "ready-after", 0, "answer /healthz with 503 until this long after start")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var errs []error
	if v := getenv("TESTAPP_FAIL_RATE"); v != "" && cfg.failRate == 0 {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("TESTAPP_FAIL_RATE: %w", err))
		}
		cfg.failRate = f
	}
	if cfg.addr == "" {
		errs = append(errs, errors.New("--addr (or TESTAPP_ADDR) is required"))
	}
	if cfg.version == "" {
		cfg.version = "dev"
	}
	v := strings.ToLower(cfg.version)
	if strings.Contains(v, "fail50") && cfg.failRate == 0 {
		cfg.failRate = 0.5
	}
	if strings.Contains(v, "unhealthy") {
		cfg.neverHealthy = true
	}
	if strings.Contains(v, "crash") {
		cfg.exitAtOnce = true
	}
	if strings.Contains(v, "slow") && cfg.slow == 0 {
		cfg.slow = 50 * time.Millisecond
	}
	if strings.Contains(v, "late") && cfg.readyAfter == 0 {
		cfg.readyAfter = time.Second
	}
	if strings.Contains(v, "stubborn") {
		cfg.ignoreTerm = true
	}
	if cfg.failRate < 0 || cfg.failRate > 1 {
		errs = append(errs, fmt.Errorf("fail rate %v outside 0..1", cfg.failRate))
	}
	return cfg, errors.Join(errs...)
}

// failer decides, request by request, whether to fail. Request n fails when
// floor(n*rate) grows, so exactly rate of any prefix of requests fail
// (rate 0.5 fails every second request), with no randomness to drift.
type failer struct {
	mu   sync.Mutex
	n    int64
	rate float64
}

func (f *failer) next() (n int64, fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	prev := int64(float64(f.n-1) * f.rate)
	cur := int64(float64(f.n) * f.rate)
	return f.n, cur > prev
}

// control is what the /testapp/ endpoints act on: tests count the health
// probes an instance received and make it stop accepting connections.
type control struct {
	probes atomic.Int64
	close  func()      // stops accepting connections; the process stays alive
	closed atomic.Bool // close was asked: Serve's end is not an error
}

func handler(cfg config, logger *log.Logger, ctl *control) http.Handler {
	fl := &failer{rate: cfg.failRate}
	readyAt := time.Now().Add(cfg.readyAfter)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /testapp/probes", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, ctl.probes.Load())
	})
	mux.HandleFunc("POST /testapp/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		fmt.Fprintln(w, "closing the listener")
		ctl.close()
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctl.probes.Add(1)
		w.Header().Set("X-Version", cfg.version)
		if cfg.neverHealthy {
			http.Error(w, "not healthy (asked to never be)", http.StatusServiceUnavailable)
			return
		}
		if time.Now().Before(readyAt) {
			http.Error(w, "not healthy yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	pid := strconv.Itoa(os.Getpid()) // X-PID: tests tell instances apart (adopted after a restart or not)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-PID", pid)
		n, fail := fl.next()
		if n%1000 == 0 {
			logger.Printf("served %d requests", n)
		}
		if cfg.slow > 0 {
			select {
			case <-time.After(cfg.slow):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("X-Version", cfg.version)
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil && d > 0 {
			// Lets drain tests hold a request in flight for a known time: the
			// headers go out first, so the client knows it is in flight.
			if !fail {
				w.WriteHeader(http.StatusOK)
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
				}
			}
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		if fail {
			http.Error(w, "testapp "+cfg.version+": failing as asked", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "testapp %s\n", cfg.version)
	})
	return mux
}

func run(cfg config) error {
	logger := log.New(os.Stdout, "", log.LstdFlags)
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	ctl := &control{}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second}
	ctl.close = func() {
		// Idle keep-alive connections close too, so that whoever connects
		// next is refused.
		ctl.closed.Store(true)
		srv.SetKeepAlivesEnabled(false)
		ln.Close()
		logger.Printf("testapp %s: listener closed as asked", cfg.version)
	}
	srv.Handler = handler(cfg, logger, ctl)
	sigs := []os.Signal{syscall.SIGTERM, os.Interrupt}
	if cfg.ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
		sigs = sigs[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), sigs...)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Printf("testapp %s listening on %s (pid %d)", cfg.version, ln.Addr(), os.Getpid())
	select {
	case err := <-errc:
		if !ctl.closed.Load() {
			return err
		}
		<-ctx.Done() // alive but refusing connections until stopped
	case <-ctx.Done():
	}
	logger.Printf("testapp %s: signal received, draining", cfg.version)
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Printf("testapp %s: stopped", cfg.version)
	return nil
}
