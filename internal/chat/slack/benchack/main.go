// Command benchack measures how fast ship acknowledges Slack slash commands:
// N concurrent signed "/ship status resizer" requests against the chat
// handler served on a loopback listener (with the in-memory engine and the
// loopback Slack stand-in), and the same load against a reference handler
// that only reads the body and answers fixed JSON, in one run. It reports
// p50/p99 per round and overall, and the ratio to the reference. Slack
// wants an answer within 3 s; ship's goal is p99 under 100 ms.
//
// Run it through scripts/bench-slack.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/chat/slack"
	"github.com/shipteam/ship/internal/chat/slack/slacktest"
)

const secret = "bench-signing-secret"

func main() {
	n := flag.Int("n", 200, "concurrent requests per round")
	rounds := flag.Int("rounds", 5, "measured rounds (after one warm-up round)")
	text := flag.String("text", "status resizer", "slash command text after /ship")
	goal := flag.Duration("goal", 100*time.Millisecond, "p99 goal; exit 1 above it")
	flag.Parse()
	if err := run(*n, *rounds, *text, *goal); err != nil {
		fmt.Fprintln(os.Stderr, "bench-slack:", err)
		os.Exit(1)
	}
}

func run(n, rounds int, text string, goal time.Duration) error {
	fake := slacktest.NewServer()
	defer fake.Close()
	eng := slacktest.NewEngine("resizer")
	bot, err := slack.New(slack.Config{
		SigningSecret: secret, BotToken: "xoxb-bench", APIURL: fake.APIURL(),
		Grants:      []slack.Grant{{Apps: []string{"*"}, Envs: []string{"*"}, Role: "admin", Users: []string{"UBENCH"}}},
		MaxInFlight: 4 * n,
	}, eng, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- bot.Run(ctx) }()
	defer func() { cancel(); <-runDone }()

	shipURL, stopShip, err := serve(bot.Handler())
	if err != nil {
		return err
	}
	defer stopShip()
	refURL, stopRef, err := serve(http.HandlerFunc(reference))
	if err != nil {
		return err
	}
	defer stopRef()

	fmt.Printf("machine: %s, %d CPUs, %s/%s, %s\n", cpuModel(), goruntime.NumCPU(), goruntime.GOOS, goruntime.GOARCH, goruntime.Version())
	fmt.Printf("load: %d concurrent signed \"/ship %s\" per round, 1 warm-up + %d rounds, loopback\n", n, text, rounds)

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 2 * n, MaxIdleConnsPerHost: 2 * n, MaxConnsPerHost: 0}, Timeout: 10 * time.Second}
	var shipAll, refAll []time.Duration
	var shipP99s, refP99s []time.Duration
	seq := 0
	for r := 0; r <= rounds; r++ {
		// Alternate which server goes first so neither always gets a cold cache.
		order := []string{"ship", "ref"}
		if r%2 == 1 {
			order = []string{"ref", "ship"}
		}
		for _, which := range order {
			u := shipURL
			if which == "ref" {
				u = refURL
			}
			lat, err := burst(client, u, n, text, &seq)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", which, r, err)
			}
			if r == 0 {
				continue
			}
			fmt.Printf("round %d %-4s p50 %7s  p99 %7s  max %7s\n", r, which, q(lat, 0.50), q(lat, 0.99), q(lat, 1))
			if which == "ship" {
				shipAll = append(shipAll, lat...)
				shipP99s = append(shipP99s, q(lat, 0.99))
			} else {
				refAll = append(refAll, lat...)
				refP99s = append(refP99s, q(lat, 0.99))
			}
		}
	}
	sp50, sp99 := q(shipAll, 0.50), q(shipAll, 0.99)
	rp50, rp99 := q(refAll, 0.50), q(refAll, 0.99)
	fmt.Printf("ship      p50 %7s  p99 %7s  (%d requests)\n", sp50, sp99, len(shipAll))
	fmt.Printf("reference p50 %7s  p99 %7s  (bare handler, same listener type and client)\n", rp50, rp99)
	fmt.Printf("ratio ship/reference: p50 %.2fx  p99 %.2fx\n", ratio(sp50, rp50), ratio(sp99, rp99))
	// One stalled round (another process taking the CPUs) dominates the
	// pooled p99; the median round shows the usual case.
	fmt.Printf("median round p99: ship %s, reference %s\n", q(shipP99s, 0.5), q(refP99s, 0.5))
	if s := bot.Stats(); s.Unauthorized != 0 || s.Busy != 0 {
		return fmt.Errorf("unexpected refusals: %+v", s)
	}
	if sp99 > goal {
		fmt.Printf("goal p99 < %s: MISSED\n", goal)
		return errors.New("p99 above goal")
	}
	fmt.Printf("goal p99 < %s: met\n", goal)
	return nil
}

func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// reference reads the body and answers fixed JSON: the floor of an HTTP
// round trip on this machine.
func reference(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"response_type":"ephemeral","text":"ok"}`)
}

// burst fires n requests at once (each signed, each unique so none is a
// replay) and returns their latencies.
func burst(client *http.Client, base string, n int, text string, seq *int) ([]time.Duration, error) {
	reqs := make([]*http.Request, n)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	for i := range reqs {
		*seq++
		body := url.Values{
			"token": {"x"}, "team_id": {"T1"}, "channel_id": {"CBENCH"}, "user_id": {"UBENCH"}, "user_name": {"bench"},
			"command": {"/ship"}, "text": {text}, "response_url": {base + "/unused"},
			"trigger_id": {strconv.Itoa(*seq)},
		}.Encode()
		req, err := http.NewRequest(http.MethodPost, base+"/slack/commands", strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Slack-Request-Timestamp", ts)
		req.Header.Set("X-Slack-Signature", slack.SignatureHeader(secret, ts, []byte(body)))
		reqs[i] = req
	}
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() {
			<-start
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			lat[i] = time.Since(t0)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"text"`) {
				errs[i] = fmt.Errorf("status %d: %s", resp.StatusCode, b)
			}
		})
	}
	close(start)
	wg.Wait()
	return lat, errors.Join(errs...)
}

func q(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return s[i].Round(10 * time.Microsecond)
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
