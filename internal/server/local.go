package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shipteam/ship/internal/analysis"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/runtime/local"
	"github.com/shipteam/ship/internal/spec"
	"github.com/shipteam/ship/internal/traffic"
)

// runParts are the ports the engine drives, from one runtime or the other.
type runParts struct {
	runtime runtime.Runtime
	router  runtime.Router
	metrics analysis.Source
	logs    runtime.LogReader // nil when the runtime keeps no logs
	// lookEvery is the engine's LookEvery: how often an idle app is looked
	// at for changes made outside ship (never on the local runtime: only
	// ship starts and stops its processes, and restarts crashed ones).
	lookEvery time.Duration
}

// startLocal starts the embedded runtime: one router listener per app and
// environment, then the process runtime, adopting what an earlier ship left
// running. stop (always non-nil, also after an error) drains the instances,
// then closes the router.
func startLocal(ctx context.Context, dataDir string, catalog *spec.Catalog, reg prometheus.Registerer, log *slog.Logger) (runParts, func(context.Context), error) {
	router, err := traffic.New(traffic.Config{Logger: log.With("part", "router"), Registerer: reg})
	if err != nil {
		return runParts{}, func(context.Context) {}, fmt.Errorf("router: %w", err)
	}
	var rt *local.Runtime
	stop := func(c context.Context) {
		if rt != nil {
			if err := rt.Shutdown(c); err != nil {
				log.Error("runtime shutdown", "err", err)
			}
		}
		if err := router.Close(c); err != nil {
			log.Error("router close", "err", err)
		}
	}
	for _, app := range catalog.All() {
		for _, env := range envsOf(app) {
			addr := net.JoinHostPort(listenHost(app), strconv.Itoa(app.PortFor(env)))
			endpoint, err := router.Listen(ctx, app, env, addr)
			if err != nil {
				return runParts{}, stop, fmt.Errorf("app %s (%s): cannot listen on port %d: %w", app.Name, env, app.PortFor(env), err)
			}
			log.Info("app endpoint", "app", app.Name, "env", env, "endpoint", endpoint)
		}
	}
	rt, err = local.New(local.Config{Dir: filepath.Join(dataDir, "instances"), Backends: router, Logger: log.With("part", "runtime")})
	if err != nil {
		return runParts{}, stop, fmt.Errorf("local runtime: %w", err)
	}
	router.ReportHealthTo(rt) // traffic counts as health: fewer probes, and a failed connection is probed at once
	if err := rt.Adopt(ctx, catalog.All()); err != nil {
		return runParts{}, stop, fmt.Errorf("adopt running instances: %w", err)
	}
	return runParts{runtime: rt, router: router, metrics: router, logs: rt, lookEvery: -1}, stop, nil
}
