package kube

import (
	"context"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// readCache answers Status and Weight from informer caches (one SharedInformerFactory
// per namespace ship works in, watching only objects labelled
// app.kubernetes.io/managed-by=ship), so the engine's per-tick Status of
// every active app costs no API request. Namespaces are watched from their
// first Status on; until a namespace's caches have synced, reads go to the
// API server. It needs list and watch on Deployments, pods and Services (granted by
// deploy/rbac.yaml).
type readCache struct {
	cs   informerClient
	mu   sync.Mutex
	ns   map[string]*nsCache
	stop chan struct{}
}

type nsCache struct {
	deps   appslisters.DeploymentLister
	pods   corelisters.PodLister
	svcs   corelisters.ServiceLister
	synced func() bool
}

// informerClient is what an informer factory needs.
type informerClient = kubernetes.Interface

func newReadCache(cs informerClient) *readCache {
	return &readCache{cs: cs, ns: map[string]*nsCache{}, stop: make(chan struct{})}
}

// forNS returns the namespace's listers once synced, else nil (and starts
// watching it on first use).
func (c *readCache) forNS(ns string) *nsCache {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.stop:
		return nil
	default:
	}
	n, ok := c.ns[ns]
	if !ok {
		f := informers.NewSharedInformerFactoryWithOptions(c.cs, 10*time.Minute,
			informers.WithNamespace(ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelManagedBy + "=ship" }))
		di, pi, si := f.Apps().V1().Deployments(), f.Core().V1().Pods(), f.Core().V1().Services()
		n = &nsCache{deps: di.Lister(), pods: pi.Lister(), svcs: si.Lister()}
		dInf, pInf, sInf := di.Informer(), pi.Informer(), si.Informer()
		n.synced = func() bool { return dInf.HasSynced() && pInf.HasSynced() && sInf.HasSynced() }
		f.Start(c.stop)
		c.ns[ns] = n
		// Wait briefly so the first Status of a namespace usually reads
		// the cache; a slow sync falls back to direct reads meanwhile.
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		cache.WaitForCacheSync(ctx.Done(), n.synced)
		cancel()
		c.mu.Lock()
	}
	if !n.synced() {
		return nil
	}
	return n
}

func (c *readCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
}

// getDeployment reads a Deployment from the cache when synced, else from
// the API server.
func (r *Runtime) getDeployment(ctx context.Context, ns, name string) (*appsv1.Deployment, error) {
	if r.cache != nil {
		if n := r.cache.forNS(ns); n != nil {
			d, err := n.deps.Deployments(ns).Get(name)
			if err != nil && !apierrors.IsNotFound(err) {
				return nil, err
			}
			return d, err
		}
	}
	return r.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
}

// getService reads a Service from the cache when synced, else from the
// API server. Only reads use it: SetWeight reads the Service it rewrites
// from the API server.
func (r *Runtime) getService(ctx context.Context, ns, name string) (*corev1.Service, error) {
	if r.cache != nil {
		if n := r.cache.forNS(ns); n != nil {
			return n.svcs.Services(ns).Get(name)
		}
	}
	return r.cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
}

// waitService waits (at most a second) until the cache holds the Service
// as written at resourceVersion rv or later, so that a Weight read right
// after SetWeight counts the tracks the new selector picks, not the old
// ones. Without a synced cache there is nothing to wait for.
func (c *readCache) waitService(ctx context.Context, ns, name, rv string) {
	n := c.forNS(ns)
	if n == nil {
		return
	}
	want, _ := strconv.ParseUint(rv, 10, 64)
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for {
		if s, err := n.svcs.Services(ns).Get(name); err == nil {
			// resourceVersions are etcd revisions: a larger one is a later
			// write (someone else's), which is as fresh as ours.
			got, _ := strconv.ParseUint(s.ResourceVersion, 10, 64)
			if s.ResourceVersion == rv || (want > 0 && got > want) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// listPods lists pods matching sel from the cache when synced, else from
// the API server.
func (r *Runtime) listPods(ctx context.Context, ns string, sel labels.Set) ([]corev1.Pod, error) {
	if r.cache != nil {
		if n := r.cache.forNS(ns); n != nil {
			ps, err := n.pods.Pods(ns).List(labels.SelectorFromSet(sel))
			if err != nil {
				return nil, err
			}
			out := make([]corev1.Pod, len(ps))
			for i, p := range ps {
				out[i] = *p
			}
			return out, nil
		}
	}
	l, err := r.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(sel).String()})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// Close stops the informers of Config.Cache; the Runtime then reads from
// the API server again. Safe to call more than once and without a cache.
func (r *Runtime) Close() {
	if r.cache != nil {
		r.cache.close()
	}
}
