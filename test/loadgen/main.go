// Command loadgen drives an HTTP endpoint with request bodies read from
// files, at a fixed concurrency, for a duration or a count, and prints
// throughput and latency quantiles. It exists for scripts/bench-resizer.
//
// One operation sends the same body to every -url in turn (one URL: one
// request), so "N single preset requests per image" and "one variants
// request per image" are measured the same way: operations per second.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type config struct {
	urls, bodies, headers listFlag
	method                string
	concurrency           int
	duration              time.Duration
	count                 int
	timeout               time.Duration
	label                 string
	jsonOut               bool
}

// Report is what one run measured.
type Report struct {
	Label       string         `json:"label"`
	Concurrency int            `json:"concurrency"`
	Ops         int            `json:"ops"`
	Requests    int            `json:"requests"`
	Errors      int            `json:"errors"`
	Seconds     float64        `json:"seconds"`
	OpsPerSec   float64        `json:"ops_per_sec"`
	P50Ms       float64        `json:"p50_ms"`
	P99Ms       float64        `json:"p99_ms"`
	BytesIn     int64          `json:"bytes_in_per_op"`
	BytesOut    int64          `json:"bytes_out_per_op"`
	Status      map[string]int `json:"status"`
	FirstError  string         `json:"first_error,omitempty"`
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	var c config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&c.urls, "url", "target URL; repeat to send each body to several URLs per operation")
	fs.Var(&c.bodies, "body", "request body file or glob; repeat; bodies are used round-robin")
	fs.Var(&c.headers, "header", "extra header 'Name: value'; repeat")
	fs.StringVar(&c.method, "method", "POST", "HTTP method")
	fs.IntVar(&c.concurrency, "c", 1, "concurrent workers")
	fs.DurationVar(&c.duration, "d", 10*time.Second, "run for this long (ignored when -n is set)")
	fs.IntVar(&c.count, "n", 0, "run exactly this many operations")
	fs.DurationVar(&c.timeout, "timeout", 60*time.Second, "per-request timeout")
	fs.StringVar(&c.label, "label", "", "label copied into the report")
	fs.BoolVar(&c.jsonOut, "json", false, "print one JSON object instead of a table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	bodies, err := loadBodies(c.bodies)
	if err != nil {
		return err
	}
	rep, err := drive(context.Background(), c, bodies)
	if err != nil {
		return err
	}
	if c.jsonOut {
		return json.NewEncoder(stdout).Encode(rep)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "label\tc\tops\terrors\tops/s\tp50 ms\tp99 ms\tbytes out/op")
	fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f\t%.1f\t%.1f\t%d\n", rep.Label, rep.Concurrency, rep.Ops, rep.Errors, rep.OpsPerSec, rep.P50Ms, rep.P99Ms, rep.BytesOut)
	return tw.Flush()
}

func (c config) validate() error {
	var errs []error
	if len(c.urls) == 0 {
		errs = append(errs, errors.New("-url is required"))
	}
	if c.concurrency < 1 {
		errs = append(errs, fmt.Errorf("-c %d: want >= 1", c.concurrency))
	}
	if c.count < 0 {
		errs = append(errs, fmt.Errorf("-n %d: want >= 0", c.count))
	}
	if c.count == 0 && c.duration <= 0 {
		errs = append(errs, errors.New("-d must be > 0 when -n is not set"))
	}
	for _, h := range c.headers {
		if !strings.Contains(h, ":") {
			errs = append(errs, fmt.Errorf("-header %q: want 'Name: value'", h))
		}
	}
	return errors.Join(errs...)
}

func loadBodies(patterns []string) ([][]byte, error) {
	var out [][]byte
	for _, p := range patterns {
		files, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("body %q: %w", p, err)
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("body %q: no such file", p)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		out = [][]byte{nil} // GET-style runs without a body
	}
	return out, nil
}

type sample struct {
	lat           time.Duration
	in, out       int64
	status        []int
	err           error
	failedRequest bool
}

func drive(ctx context.Context, c config, bodies [][]byte) (Report, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: c.concurrency, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: c.timeout}
	var next atomic.Int64
	var mu sync.Mutex
	var samples []sample
	deadline := time.Now().Add(c.duration)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < c.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if c.count > 0 && i >= int64(c.count) || c.count == 0 && time.Now().After(deadline) {
					return
				}
				s := op(ctx, client, c, bodies[i%int64(len(bodies))])
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return summarise(c, samples, time.Since(start)), nil
}

// op sends body to every URL in turn and times the whole sequence.
func op(ctx context.Context, client *http.Client, c config, body []byte) sample {
	var s sample
	t0 := time.Now()
	for _, u := range c.urls {
		req, err := http.NewRequestWithContext(ctx, c.method, u, bytes.NewReader(body))
		if err != nil {
			s.err, s.failedRequest = err, true
			break
		}
		for _, h := range c.headers {
			k, v, _ := strings.Cut(h, ":")
			req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		resp, err := client.Do(req)
		if err != nil {
			s.err, s.failedRequest = err, true
			break
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		s.in += int64(len(body))
		s.out += n
		s.status = append(s.status, resp.StatusCode)
		if err != nil {
			s.err, s.failedRequest = err, true
			break
		}
		if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotModified {
			s.err, s.failedRequest = fmt.Errorf("%s %s: status %d", c.method, u, resp.StatusCode), true
		}
	}
	s.lat = time.Since(t0)
	return s
}

func summarise(c config, samples []sample, elapsed time.Duration) Report {
	r := Report{Label: c.label, Concurrency: c.concurrency, Ops: len(samples), Seconds: elapsed.Seconds(), Status: map[string]int{}}
	var lats []time.Duration
	var in, out int64
	for _, s := range samples {
		r.Requests += len(s.status)
		for _, st := range s.status {
			r.Status[fmt.Sprint(st)]++
		}
		if s.failedRequest {
			r.Errors++
			if r.FirstError == "" {
				r.FirstError = s.err.Error()
			}
			continue
		}
		lats = append(lats, s.lat)
		in += s.in
		out += s.out
	}
	ok := len(lats)
	if ok > 0 {
		slices.Sort(lats)
		r.P50Ms = ms(quantile(lats, 0.50))
		r.P99Ms = ms(quantile(lats, 0.99))
		r.BytesIn = in / int64(ok)
		r.BytesOut = out / int64(ok)
	}
	if elapsed > 0 {
		r.OpsPerSec = float64(ok) / elapsed.Seconds()
	}
	return r
}

// quantile is the nearest-rank quantile of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
