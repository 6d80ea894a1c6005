package kube

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ship's client rate limit toward the API server, unless the kubeconfig
// sets one.
const (
	DefaultQPS   = 50
	DefaultBurst = 100
)

// LoadRestConfig finds the cluster the way kubectl does: the kubeconfig
// path given (a flag), else $KUBECONFIG, else ~/.kube/config; context ""
// means the file's current context. With no kubeconfig at all inside a
// pod, the in-cluster service account config is used.
func LoadRestConfig(kubeconfig, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kube: load config (kubeconfig %q, context %q): %w", kubeconfig, context, err)
	}
	cfg.UserAgent = "ship"
	// client-go's default limit (5 requests/s, bursts of 10) would be
	// ship's bottleneck: a release costs ~50 requests (scripts/bench-kube),
	// so 200 apps at once would take half an hour in the limiter alone.
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = DefaultQPS, DefaultBurst
	}
	return cfg, nil
}
