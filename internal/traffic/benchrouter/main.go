// Command benchrouter runs ship's router (internal/traffic) alone for the
// router benchmark (scripts/bench-router): one app whose stable and canary
// tracks are the given instances, at the given canary weight.
package main

import (
	"context"
	"flag"
	"github.com/shipteam/ship/internal/release"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
	"github.com/shipteam/ship/internal/traffic"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	addrFile := flag.String("addr-file", "", "write the bound address here")
	stable := flag.String("stable", "", "stable instances, comma separated host:port")
	canary := flag.String("canary", "", "canary instances, comma separated host:port")
	weight := flag.String("weight", "1%", "canary percent")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here until exit")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := traffic.New(traffic.Config{Logger: logger, Registerer: prometheus.NewRegistry()})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	app := spec.App{Name: "bench"}
	r.SetBackends(app.Name, "bench", runtime.Stable, "v1", split(*stable))
	r.SetBackends(app.Name, "bench", runtime.Canary, "v2", split(*canary))
	w, err := release.ParseWeight(*weight)
	if err != nil {
		log.Fatal(err)
	}
	if err := r.SetWeight(ctx, app, "bench", w); err != nil {
		log.Fatal(err)
	}
	ep, err := r.Listen(ctx, app, "bench", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ep), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, ca, _ := r.Sample(sctx, app.Name, "bench")
	logger.Warn("router done", "stable", st.Requests, "canary", ca.Requests, "errors", st.Errors+ca.Errors)
	if err := r.Close(sctx); err != nil {
		logger.Error("close", "err", err)
	}
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
