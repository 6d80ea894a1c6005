package kube

import (
	"context"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1ac "sigs.k8s.io/gateway-api/applyconfiguration/apis/v1"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// Router splits traffic between an app's tracks: HTTPRoute backendRef
// weights when the spec names a Gateway, else replica ratios behind the
// app's Service (the share is then what the replica counts give, and
// Status says so in the canary's Note).
type Router struct{ r *Runtime }

var _ runtime.Router = Router{}

// Router returns the router that goes with r.
func (r *Runtime) Router() runtime.Router { return Router{r} }

// weights turns a canary weight into the smallest integer backendRef
// weights: 1% = 99/1, 0.1% = 999/1, 50% = 1/1.
func weights(w release.Weight) (stable, canary int32) {
	c := int64(w)
	if c <= 0 {
		return 1, 0
	}
	if c >= 10000 {
		return 0, 1
	}
	g := gcd(c, 10000)
	return int32((10000 - c) / g), int32(c / g)
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// SetWeight records the weight on the app's Service and puts it in force.
func (rt Router) SetWeight(ctx context.Context, app spec.App, env string, w release.Weight) error {
	if !w.Valid() {
		return fmt.Errorf("kube: canary weight %s out of 0..100%%", w)
	}
	env, ns, err := where(app, env)
	if err != nil {
		return err
	}
	if err := rt.r.ensureNamespace(ctx, ns, env); err != nil {
		return err
	}
	return rt.r.applyRouting(ctx, app, env, ns, w, nil)
}

// Weight reports the canary share in force: the route's weights with a
// Gateway, else the canary's share of the desired replicas behind the
// app's Service.
func (rt Router) Weight(ctx context.Context, app spec.App, env string) (release.Weight, string, error) {
	_, ns, err := where(app, env)
	if err != nil {
		return 0, "", err
	}
	r := rt.r
	if gw := app.Kube.Gateway; gw != nil {
		route, err := r.gw.GatewayV1().HTTPRoutes(ns).Get(ctx, app.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return 0, r.gatewayEndpoint(ctx, app, ns), nil
		}
		if err != nil {
			return 0, "", fmt.Errorf("get httproute %s/%s: %w", ns, app.Name, err)
		}
		var s, c int64
		for _, rule := range route.Spec.Rules {
			for _, b := range rule.BackendRefs {
				w := int64(1)
				if b.Weight != nil {
					w = int64(*b.Weight)
				}
				switch string(b.Name) {
				case trackName(app, runtime.Stable):
					s += w
				case trackName(app, runtime.Canary):
					c += w
				}
			}
		}
		if s+c == 0 {
			return 0, r.gatewayEndpoint(ctx, app, ns), nil
		}
		return share(c, s+c), r.gatewayEndpoint(ctx, app, ns), nil
	}
	svc, err := r.getService(ctx, ns, app.Name)
	if apierrors.IsNotFound(err) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("get service %s/%s: %w", ns, app.Name, err)
	}
	share, err := r.replicaShare(ctx, app, ns, svc)
	if err != nil {
		return 0, "", err
	}
	return share.effective, serviceEndpoint(svc), nil
}

// desiredWeight reads the weight last asked (0 when none).
func (r *Runtime) desiredWeight(ctx context.Context, app spec.App, ns string) (release.Weight, *corev1.Service, error) {
	svc, err := r.cs.CoreV1().Services(ns).Get(ctx, app.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("get service %s/%s: %w", ns, app.Name, err)
	}
	return annotatedWeight(svc), svc, nil
}

// applyRouting writes the app's Service and, with a Gateway, its HTTPRoute
// for weight. Both are applied whole, by one code path, so ship's field
// set stays the same whoever calls it.
func (r *Runtime) applyRouting(ctx context.Context, app spec.App, env, ns string, weight release.Weight, tb *takeBack) error {
	// The app's Service: stable only at 0, canary only at 100, both tracks
	// in between (the replica-ratio split when there is no Gateway).
	sel := map[string]string{LabelApp: app.Name}
	switch {
	case weight <= 0:
		sel[LabelTrack] = string(runtime.Stable)
	case weight >= release.Full:
		sel[LabelTrack] = string(runtime.Canary)
	}
	typ := corev1.ServiceTypeClusterIP
	if app.Kube.Expose {
		typ = corev1.ServiceTypeLoadBalancer
	}
	svc := corev1ac.Service(app.Name, ns).WithLabels(baseLabels(app, env)).
		WithAnnotations(map[string]string{AnnotationWeight: weight.Number()}).
		WithSpec(corev1ac.ServiceSpec().WithType(typ).WithSelector(sel).
			WithPorts(corev1ac.ServicePort().WithName("http").WithPort(ServicePort).WithTargetPort(intstr.FromString("http")).WithProtocol(corev1.ProtocolTCP)))
	var applied *corev1.Service
	if err := r.apply(tb, "service", ns, app.Name, func(o metav1.ApplyOptions) (err error) {
		applied, err = r.cs.CoreV1().Services(ns).Apply(ctx, svc, o)
		return err
	}); err != nil {
		return err
	}
	if r.cache != nil {
		r.cache.waitService(ctx, ns, app.Name, applied.ResourceVersion)
	}
	gw := app.Kube.Gateway
	if gw == nil {
		return nil
	}
	gwNS := gw.Namespace
	if gwNS == "" {
		gwNS = ns
	}
	s, c := weights(weight)
	route := gwv1ac.HTTPRoute(app.Name, ns).WithLabels(baseLabels(app, env)).
		WithSpec(gwv1ac.HTTPRouteSpec().
			WithParentRefs(gwv1ac.ParentReference().WithName(gwv1.ObjectName(gw.Name)).WithNamespace(gwv1.Namespace(gwNS))).
			WithRules(gwv1ac.HTTPRouteRule().WithBackendRefs(
				gwv1ac.HTTPBackendRef().WithName(gwv1.ObjectName(trackName(app, runtime.Stable))).WithPort(ServicePort).WithWeight(s),
				gwv1ac.HTTPBackendRef().WithName(gwv1.ObjectName(trackName(app, runtime.Canary))).WithPort(ServicePort).WithWeight(c),
			)))
	return r.apply(tb, "httproute", ns, app.Name, func(o metav1.ApplyOptions) error {
		_, err := r.gw.GatewayV1().HTTPRoutes(ns).Apply(ctx, route, o)
		return err
	})
}

// annotatedWeight is the weight last asked, as the app's Service records
// it (0 when missing or unreadable: a hand-edited annotation is not an
// error, the next SetWeight writes it again).
func annotatedWeight(svc *corev1.Service) release.Weight {
	w, err := release.ParseWeight(svc.Annotations[AnnotationWeight])
	if err != nil || !w.Valid() {
		return 0
	}
	return w
}

// share is part of whole as a weight, rounded to the nearest 0.01%.
func share(part, whole int64) release.Weight {
	if whole <= 0 {
		return 0
	}
	return release.Weight((part*int64(release.Full) + whole/2) / whole)
}

// replicaSplit is the replica-ratio split behind the app's Service.
type replicaSplit struct {
	asked, effective release.Weight
	stable, canary   int // desired replicas of the tracks the Service selects
}

func (r *Runtime) replicaShare(ctx context.Context, app spec.App, ns string, svc *corev1.Service) (replicaSplit, error) {
	sh := replicaSplit{asked: annotatedWeight(svc)}
	for _, t := range runtime.Tracks {
		if sel, ok := svc.Spec.Selector[LabelTrack]; ok && sel != string(t) {
			continue
		}
		d, err := r.getDeployment(ctx, ns, trackName(app, t))
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return sh, fmt.Errorf("get deployment %s/%s: %w", ns, trackName(app, t), err)
		}
		if d.DeletionTimestamp != nil {
			continue
		}
		n := 1
		if d.Spec.Replicas != nil {
			n = int(*d.Spec.Replicas)
		}
		if t == runtime.Stable {
			sh.stable = n
		} else {
			sh.canary = n
		}
	}
	sh.effective = share(int64(sh.canary), int64(sh.stable+sh.canary))
	return sh, nil
}

func serviceEndpoint(svc *corev1.Service) string {
	for _, in := range svc.Status.LoadBalancer.Ingress {
		host := in.IP
		if host == "" {
			host = in.Hostname
		}
		if host != "" {
			return net.JoinHostPort(host, strconv.Itoa(ServicePort))
		}
	}
	return fmt.Sprintf("%s.%s.svc:%d", svc.Name, svc.Namespace, ServicePort)
}

// gatewayEndpoint is the Gateway's first address, or its name while no
// controller has given it one.
func (r *Runtime) gatewayEndpoint(ctx context.Context, app spec.App, ns string) string {
	gwNS := app.Kube.Gateway.Namespace
	if gwNS == "" {
		gwNS = ns
	}
	g, err := r.gw.GatewayV1().Gateways(gwNS).Get(ctx, app.Kube.Gateway.Name, metav1.GetOptions{})
	if err == nil {
		for _, a := range g.Status.Addresses {
			if a.Value != "" {
				return "http://" + a.Value
			}
		}
	}
	return "gateway " + gwNS + "/" + app.Kube.Gateway.Name
}
