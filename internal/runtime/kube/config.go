package kube

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
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
	return cfg, nil
}
