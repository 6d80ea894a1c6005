package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/shipteam/ship/internal/analysis"
	promsource "github.com/shipteam/ship/internal/analysis/prometheus"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/runtime/kube"
	"github.com/shipteam/ship/internal/spec"
)

// Runtime names for Config.Runtime / --runtime / $SHIP_RUNTIME.
const (
	RuntimeLocal = "local"
	RuntimeKube  = "kube"
)

// KubeConfig says which cluster `ship serve --runtime kube` drives.
type KubeConfig struct {
	// Kubeconfig is --kubeconfig; "" = $KUBECONFIG, ~/.kube/config, or the
	// in-cluster service account when ship runs in a pod.
	Kubeconfig string
	// Context is --kube-context; "" = the kubeconfig's current context.
	Context string
	// PrometheusURL is --prometheus: the Prometheus that scrapes the apps'
	// pods, whose metrics judge canaries. "" = no metrics (see kubeParts).
	PrometheusURL string
	// ReachTimeout bounds the start-up check that the API server answers.
	// Default 15s.
	ReachTimeout time.Duration
}

// kubeParts connects ship to a cluster: the Kubernetes runtime and router,
// and the analysis source. It fails at once when an app has no kube.image
// or the API server does not answer, before the engine starts. The runtime
// reads Status from informer caches: the caller must call its Close at
// shutdown.
//
// Canaries are judged on Prometheus' numbers when cfg.PrometheusURL is set
// (the apps' own request metrics, queried per track: docs/kubernetes.md).
// Without it there are no per-track request metrics, so the source is
// kube.NoMetrics: it reports no traffic, automated canary steps wait and
// fail at their deadline ("not enough traffic"), never pass on made-up
// numbers. Held canaries (--canary) promoted by hand and --rolling deploys
// work either way.
func kubeParts(ctx context.Context, cfg KubeConfig, apps []spec.App, log *slog.Logger) (*kube.Runtime, runtime.Router, analysis.Source, error) {
	var missing []string
	for _, a := range apps {
		if a.Kube.Image == "" {
			missing = append(missing, a.Name)
		}
	}
	if len(missing) > 0 {
		return nil, nil, nil, fmt.Errorf("--runtime kube: apps without kube.image: %s", strings.Join(missing, ", "))
	}
	rc, err := kube.LoadRestConfig(cfg.Kubeconfig, cfg.Context)
	if err != nil {
		return nil, nil, nil, err
	}
	rt, err := kube.New(kube.Config{RestConfig: rc, Logger: log, Cache: true})
	if err != nil {
		return nil, nil, nil, err
	}
	if cfg.ReachTimeout == 0 {
		cfg.ReachTimeout = 15 * time.Second
	}
	// ServerVersion takes no context; bound it through the rest client's
	// timeout on a copy of the config.
	probe := *rc
	probe.Timeout = cfg.ReachTimeout
	pcs, err := kubernetes.NewForConfig(&probe)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("kube client: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, err
	}
	v, err := pcs.Discovery().ServerVersion()
	if err != nil {
		rt.Close()
		return nil, nil, nil, fmt.Errorf("kube API server %s does not answer: %w", rc.Host, err)
	}
	log.Info("kubernetes runtime", "server", rc.Host, "version", v.GitVersion, "context", cfg.Context)
	if cfg.PrometheusURL == "" {
		log.Warn("no --prometheus: automated canary steps cannot be judged and will fail at their deadline; held canaries and --rolling work")
		return rt, rt.Router(), kube.NoMetrics{}, nil
	}
	catalog, err := spec.NewCatalog(apps...)
	if err != nil {
		rt.Close()
		return nil, nil, nil, err
	}
	src, err := promsource.New(promsource.Config{URL: cfg.PrometheusURL, Apps: catalog, Tracks: rt})
	if err != nil {
		rt.Close()
		return nil, nil, nil, fmt.Errorf("--prometheus: %w", err)
	}
	log.Info("canary analysis from prometheus", "url", cfg.PrometheusURL)
	return rt, rt.Router(), src, nil
}

var errUnknownRuntime = errors.New("unknown runtime")

// checkRuntime validates a --runtime value.
func checkRuntime(name string) error {
	switch name {
	case "", RuntimeLocal, RuntimeKube:
		return nil
	}
	return fmt.Errorf("--runtime %q: %w (want %s or %s)", name, errUnknownRuntime, RuntimeLocal, RuntimeKube)
}
