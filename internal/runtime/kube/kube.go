// Package kube runs apps on Kubernetes: it implements runtime.Runtime with
// a Deployment per track and runtime.Router with Gateway API HTTPRoute
// weights (when the spec names a Gateway) or replica ratios behind the
// app's Service. Every object is written with server-side apply under
// ship's own field manager and without Force, so fields changed by hand
// that ship does not manage survive, and a hand change to a field ship
// manages comes back as a conflict error instead of being overwritten.
//
// Per app and environment, in the namespace from the spec
// (kube.namespace, default ship-{{.Env}}):
//
//	Deployment <app>-stable, <app>-canary    one per track
//	Service    <app>-stable, <app>-canary    ClusterIP, one per track
//	Service    <app>                         the app's; LoadBalancer when kube.expose
//	HTTPRoute  <app>                         when kube.gateway is set
//	HPA        <app>                         when kube.autoscale is set; targets stable only
//	PDB        <app>                         maxUnavailable 1 over both tracks
//
// docs/kubernetes.md explains the choices.
package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	autoscalingv2ac "k8s.io/client-go/applyconfigurations/autoscaling/v2"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// Labels ship puts on everything it creates, to list and clean up.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by" // = ship
	LabelName      = "app.kubernetes.io/name"       // = app name
	LabelApp       = "ship.dev/app"
	LabelEnv       = "ship.dev/env"
	LabelTrack     = "ship.dev/track"
	LabelVersion   = "ship.dev/version"

	// AnnotationWeight on the app's Service holds the canary percentage
	// last asked of the router.
	AnnotationWeight = "ship.dev/canary-weight"
)

// Ports: the container listens on ContainerPort (also passed as $PORT),
// every Service listens on ServicePort.
const (
	ContainerPort = 8080
	ServicePort   = 80
)

// Config configures the adapter.
type Config struct {
	RestConfig   *rest.Config
	FieldManager string // default "ship"
	Logger       *slog.Logger
	// Cache answers Status from informer caches of ship's Deployments and
	// pods instead of API requests (see readCache); call Close when done.
	Cache bool
}

// Validate reports every missing or wrong field.
func (c Config) Validate() error {
	var errs []error
	if c.RestConfig == nil {
		errs = append(errs, errors.New("kube: RestConfig is required"))
	}
	return errors.Join(errs...)
}

// Runtime is the Kubernetes runtime.Runtime; Router returns its router.
type Runtime struct {
	cs    kubernetes.Interface
	gw    gwclient.Interface
	fm    string
	log   *slog.Logger
	cache *readCache // nil without Config.Cache
}

var _ runtime.Runtime = (*Runtime)(nil)

// New connects clients for cfg; it does not contact the cluster.
func New(cfg Config) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.FieldManager == "" {
		cfg.FieldManager = "ship"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cs, err := kubernetes.NewForConfig(cfg.RestConfig)
	if err != nil {
		return nil, fmt.Errorf("kube: client: %w", err)
	}
	gw, err := gwclient.NewForConfig(cfg.RestConfig)
	if err != nil {
		return nil, fmt.Errorf("kube: gateway api client: %w", err)
	}
	rt := &Runtime{cs: cs, gw: gw, fm: cfg.FieldManager, log: cfg.Logger}
	if cfg.Cache {
		rt.cache = newReadCache(cs)
	}
	return rt, nil
}

// IsConflict reports whether err is a server-side apply conflict: someone
// else changed a field ship manages. ship reports it and does not force.
func IsConflict(err error) bool { return apierrors.IsConflict(err) }

func (r *Runtime) applyOpts() metav1.ApplyOptions {
	return metav1.ApplyOptions{FieldManager: r.fm, Force: false}
}

func trackName(app spec.App, t runtime.Track) string { return app.Name + "-" + string(t) }

func baseLabels(app spec.App, env string) map[string]string {
	return map[string]string{LabelManagedBy: "ship", LabelName: app.Name, LabelApp: app.Name, LabelEnv: env}
}

func trackLabels(app spec.App, env string, t runtime.Track) map[string]string {
	l := baseLabels(app, env)
	l[LabelTrack] = string(t)
	return l
}

// where resolves the default env and the namespace.
func where(app spec.App, env string) (string, string, error) {
	if env == "" {
		env = app.DefaultEnv()
	}
	ns, err := app.NamespaceFor(env)
	if err != nil {
		return "", "", err
	}
	return env, ns, nil
}

func applyErr(kind, ns, name string, err error) error {
	if IsConflict(err) {
		return fmt.Errorf("apply %s %s/%s: %w (put the change in the spec, or take the field back with `ship reclaim`): %w", kind, ns, name, runtime.ErrConflict, err)
	}
	return fmt.Errorf("apply %s %s/%s: %w", kind, ns, name, err)
}

// takeBack collects, during Reclaim, the fields other managers lose.
// A nil *takeBack is an ordinary apply that never forces.
type takeBack struct{ lost []string }

// note records the causes of conflict err: the API server lists each field
// and the manager that holds it, which is exactly what Force then takes.
func (tb *takeBack) note(kind, name string, err error) {
	var se apierrors.APIStatus
	n := 0
	if errors.As(err, &se) && se.Status().Details != nil {
		for _, c := range se.Status().Details.Causes {
			if c.Type != metav1.CauseTypeFieldManagerConflict {
				continue
			}
			tb.lost = append(tb.lost, fmt.Sprintf("%s: %s %s %s", conflictManager(c.Message), kind, name, c.Field))
			n++
		}
	}
	if n == 0 {
		tb.lost = append(tb.lost, fmt.Sprintf("%s %s: %v", kind, name, err))
	}
}

// conflictManager turns the cause message `conflict with "kubectl" using
// apps/v1` into `"kubectl"`; another wording is kept whole.
func conflictManager(msg string) string {
	rest, ok := strings.CutPrefix(msg, "conflict with ")
	if !ok {
		return msg
	}
	if q, err := strconv.QuotedPrefix(rest); err == nil {
		return q
	}
	return rest
}

// apply writes one object by server-side apply. With tb (Reclaim), a
// conflict is recorded and the same apply repeated with Force; without
// it, ship never forces.
func (r *Runtime) apply(tb *takeBack, kind, ns, name string, do func(metav1.ApplyOptions) error) error {
	err := do(r.applyOpts())
	if err == nil {
		return nil
	}
	if tb == nil || !IsConflict(err) {
		return applyErr(kind, ns, name, err)
	}
	tb.note(kind, name, err)
	opts := r.applyOpts()
	opts.Force = true
	if err := do(opts); err != nil {
		return fmt.Errorf("apply %s %s/%s with force: %w", kind, ns, name, err)
	}
	return nil
}

// Apply makes track run w.Replicas pods of w.Version and makes sure the
// app's Services, PodDisruptionBudget, autoscaler and route exist.
func (r *Runtime) Apply(ctx context.Context, app spec.App, env string, track runtime.Track, w runtime.Want) error {
	return r.applyTrack(ctx, app, env, track, w, nil)
}

// Reclaim is Apply that takes back, with Force, every field ship sets that
// another field manager holds (a hand edit), on the track's objects and the
// app's. It returns who lost which field, as `"manager": kind name field`.
// Only a person asks for it (`ship reclaim`); the engine never forces.
//
// How lost fields are known: a plain apply first, and on conflict the
// causes the API server returns (each field and its manager: exactly the
// set Force takes over), then the forced apply. Diffing managedFields
// before and after would need decoding field sets and would also race
// with other writers; the conflict is the API server's own answer.
func (r *Runtime) Reclaim(ctx context.Context, app spec.App, env string, track runtime.Track, w runtime.Want) ([]string, error) {
	tb := &takeBack{}
	err := r.applyTrack(ctx, app, env, track, w, tb)
	return tb.lost, err
}

func (r *Runtime) applyTrack(ctx context.Context, app spec.App, env string, track runtime.Track, w runtime.Want, tb *takeBack) error {
	env, ns, err := where(app, env)
	if err != nil {
		return err
	}
	if w.Replicas < 0 {
		return fmt.Errorf("kube: app %s: negative replicas %d", app.Name, w.Replicas)
	}
	autoscaled := track == runtime.Stable && app.Kube.Autoscale != nil
	if autoscaled && w.Replicas == 0 {
		return fmt.Errorf("kube: app %s: 0 replicas with kube.autoscale is not supported (an autoscaler keeps at least 1)", app.Name)
	}
	if err := r.ensureNamespace(ctx, ns, env); err != nil {
		return err
	}
	dep, err := r.deployment(app, env, ns, track, w, autoscaled)
	if err != nil {
		return err
	}
	if err := r.apply(tb, "deployment", ns, *dep.Name, func(o metav1.ApplyOptions) error {
		_, err := r.cs.AppsV1().Deployments(ns).Apply(ctx, dep, o)
		return err
	}); err != nil {
		return err
	}
	svc := r.trackService(app, env, ns, track)
	if err := r.apply(tb, "service", ns, *svc.Name, func(o metav1.ApplyOptions) error {
		_, err := r.cs.CoreV1().Services(ns).Apply(ctx, svc, o)
		return err
	}); err != nil {
		return err
	}
	if err := r.ensureAppObjects(ctx, app, env, ns, tb); err != nil {
		return err
	}
	if track == runtime.Stable {
		if err := r.applyHPA(ctx, app, env, ns, w.Replicas, tb); err != nil {
			return err
		}
	}
	r.log.Debug("applied", "app", app.Name, "env", env, "ns", ns, "track", track, "version", w.Version, "replicas", w.Replicas)
	return nil
}

func (r *Runtime) ensureNamespace(ctx context.Context, ns, env string) error {
	_, err := r.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	nsac := corev1ac.Namespace(ns).WithLabels(map[string]string{LabelManagedBy: "ship", LabelEnv: env})
	if _, err := r.cs.CoreV1().Namespaces().Apply(ctx, nsac, r.applyOpts()); err != nil {
		return applyErr("namespace", "", ns, err)
	}
	// Pods are refused until the controller manager has made the default
	// ServiceAccount, and the ReplicaSet controller then retries with a
	// growing backoff (tens of seconds): wait for it here instead.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := r.cs.CoreV1().ServiceAccounts(ns).Get(wctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace %s: default service account: %w", ns, err)
		}
		select {
		case <-wctx.Done():
			r.log.Warn("default service account not created yet; first pods may be delayed", "namespace", ns)
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// progressDeadline is four fifths of the step timeout (at least 10 s): a
// version whose pods are not available within it fails with the cluster's
// ProgressDeadlineExceeded, which the engine sees before its own step
// deadline (counted from the same moment) and puts in the release's reason.
func progressDeadline(app spec.App) int32 {
	s := int32(app.Strategy.StepTimeout.D().Seconds() * 4 / 5)
	if s < 10 {
		s = 10
	}
	return s
}

func (r *Runtime) deployment(app spec.App, env, ns string, track runtime.Track, w runtime.Want, autoscaled bool) (*appsv1ac.DeploymentApplyConfiguration, error) {
	image, err := app.ImageFor(w.Version, env)
	if err != nil {
		return nil, err
	}
	vars, err := app.KubeEnvFor(w.Version, env)
	if err != nil {
		return nil, err
	}
	// The same variables the embedded runtime sets; the spec's own win.
	var envs []*corev1ac.EnvVarApplyConfiguration
	set := map[string]bool{}
	for _, kv := range vars {
		k, v, _ := strings.Cut(kv, "=")
		set[k] = true
		envs = append(envs, corev1ac.EnvVar().WithName(k).WithValue(v))
	}
	for _, kv := range [][2]string{{"PORT", strconv.Itoa(ContainerPort)}, {"SHIP_APP", app.Name}, {"SHIP_ENV", env}, {"SHIP_VERSION", w.Version}} {
		if !set[kv[0]] {
			envs = append(envs, corev1ac.EnvVar().WithName(kv[0]).WithValue(kv[1]))
		}
	}
	health := app.HealthPath
	if health == "" {
		health = "/healthz"
	}
	probe := func(period, failures int32) *corev1ac.ProbeApplyConfiguration {
		return corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath(health).WithPort(intstr.FromString("http"))).
			WithPeriodSeconds(period).WithFailureThreshold(failures)
	}
	ctr := corev1ac.Container().WithName("app").WithImage(image).
		WithPorts(corev1ac.ContainerPort().WithName("http").WithContainerPort(ContainerPort).WithProtocol(corev1.ProtocolTCP)).
		WithEnv(envs...).
		WithReadinessProbe(probe(2, 3)).
		WithLivenessProbe(probe(10, 3))
	if res, err := resources(app.Kube.Resources); err != nil {
		return nil, fmt.Errorf("app %s: %w", app.Name, err)
	} else if len(res) > 0 {
		ctr.WithResources(corev1ac.ResourceRequirements().WithRequests(res).WithLimits(res))
	}
	podLabels := trackLabels(app, env, track)
	podLabels[LabelVersion] = w.Version
	depLabels := trackLabels(app, env, track)
	depLabels[LabelVersion] = w.Version
	ds := appsv1ac.DeploymentSpec().
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{LabelApp: app.Name, LabelTrack: string(track)})).
		WithProgressDeadlineSeconds(progressDeadline(app)).
		// New pods must be ready before old ones stop taking traffic.
		WithStrategy(appsv1ac.DeploymentStrategy().WithType("RollingUpdate").
			WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
				WithMaxUnavailable(intstr.FromInt32(0)).WithMaxSurge(intstr.FromString("25%")))).
		WithTemplate(corev1ac.PodTemplateSpec().WithLabels(podLabels).
			WithSpec(corev1ac.PodSpec().WithContainers(ctr)))
	if !autoscaled {
		// With an autoscaler the HPA owns spec.replicas; ship moves its bounds.
		ds.WithReplicas(int32(w.Replicas))
	}
	return appsv1ac.Deployment(trackName(app, track), ns).WithLabels(depLabels).WithSpec(ds), nil
}

func resources(rs spec.Resources) (corev1.ResourceList, error) {
	out := corev1.ResourceList{}
	if rs.CPU != "" {
		q, err := resource.ParseQuantity(rs.CPU)
		if err != nil {
			return nil, fmt.Errorf("kube.resources.cpu %q: %w", rs.CPU, err)
		}
		out[corev1.ResourceCPU] = q
	}
	if rs.Memory != "" {
		q, err := resource.ParseQuantity(rs.Memory)
		if err != nil {
			return nil, fmt.Errorf("kube.resources.memory %q: %w", rs.Memory, err)
		}
		out[corev1.ResourceMemory] = q
	}
	return out, nil
}

func (r *Runtime) trackService(app spec.App, env, ns string, track runtime.Track) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(trackName(app, track), ns).WithLabels(trackLabels(app, env, track)).
		WithSpec(corev1ac.ServiceSpec().WithType(corev1.ServiceTypeClusterIP).
			WithSelector(map[string]string{LabelApp: app.Name, LabelTrack: string(track)}).
			WithPorts(corev1ac.ServicePort().WithName("http").WithPort(ServicePort).WithTargetPort(intstr.FromString("http")).WithProtocol(corev1.ProtocolTCP)))
}

// ensureAppObjects applies the app's Service (keeping the weight in force),
// its PodDisruptionBudget and, with a Gateway, its HTTPRoute.
func (r *Runtime) ensureAppObjects(ctx context.Context, app spec.App, env, ns string, tb *takeBack) error {
	weight, _, err := r.desiredWeight(ctx, app, ns)
	if err != nil {
		return err
	}
	if err := r.applyRouting(ctx, app, env, ns, weight, tb); err != nil {
		return err
	}
	pdb := policyv1ac.PodDisruptionBudget(app.Name, ns).WithLabels(baseLabels(app, env)).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{LabelApp: app.Name})))
	return r.apply(tb, "poddisruptionbudget", ns, app.Name, func(o metav1.ApplyOptions) error {
		_, err := r.cs.PolicyV1().PodDisruptionBudgets(ns).Apply(ctx, pdb, o)
		return err
	})
}

// hpaBounds: scaling to n sets the floor to n (never below the spec's min)
// and lifts the ceiling to at least n.
func hpaBounds(a spec.Autoscale, replicas int) (min, max int32) {
	lo := a.Min
	if replicas > lo {
		lo = replicas
	}
	if lo < 1 {
		lo = 1
	}
	hi := a.Max
	if hi < lo {
		hi = lo
	}
	return int32(lo), int32(hi)
}

func (r *Runtime) applyHPA(ctx context.Context, app spec.App, env, ns string, replicas int, tb *takeBack) error {
	if app.Kube.Autoscale == nil {
		err := r.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Delete(ctx, app.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete hpa %s/%s: %w", ns, app.Name, err)
		}
		return nil
	}
	lo, hi := hpaBounds(*app.Kube.Autoscale, replicas)
	target := int32(app.Kube.Autoscale.TargetCPU)
	if target <= 0 {
		target = 80
	}
	hpa := autoscalingv2ac.HorizontalPodAutoscaler(app.Name, ns).WithLabels(trackLabels(app, env, runtime.Stable)).
		WithSpec(autoscalingv2ac.HorizontalPodAutoscalerSpec().
			// The stable Deployment only: the canary's size is the engine's.
			WithScaleTargetRef(autoscalingv2ac.CrossVersionObjectReference().WithAPIVersion("apps/v1").WithKind("Deployment").WithName(trackName(app, runtime.Stable))).
			WithMinReplicas(lo).WithMaxReplicas(hi).
			WithMetrics(autoscalingv2ac.MetricSpec().WithType("Resource").
				WithResource(autoscalingv2ac.ResourceMetricSource().WithName(corev1.ResourceCPU).
					WithTarget(autoscalingv2ac.MetricTarget().WithType("Utilization").WithAverageUtilization(target)))))
	return r.apply(tb, "horizontalpodautoscaler", ns, app.Name, func(o metav1.ApplyOptions) error {
		_, err := r.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Apply(ctx, hpa, o)
		return err
	})
}

// Remove deletes the track's Deployment; the cluster drains its pods
// (graceful termination). The stable track takes its autoscaler along.
// ctx bounds the two DELETE calls and nothing else does (see
// runtime.Runtime.Remove): the engine gives each removal a context of its
// own; an ended ctx sends nothing.
func (r *Runtime) Remove(ctx context.Context, app spec.App, env string, track runtime.Track) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s %s: %w", app.Name, track, err)
	}
	_, ns, err := where(app, env)
	if err != nil {
		return err
	}
	bg := metav1.DeletePropagationBackground
	err = r.cs.AppsV1().Deployments(ns).Delete(ctx, trackName(app, track), metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete deployment %s/%s: %w", ns, trackName(app, track), err)
	}
	if track == runtime.Stable {
		err := r.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Delete(ctx, app.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete hpa %s/%s: %w", ns, app.Name, err)
		}
	}
	return nil
}

// Purge deletes everything ship created for the app in env, found by its
// labels: Deployments, Services, the HTTPRoute, the HPA and the PDB. The
// namespace stays (other apps may live in it).
func (r *Runtime) Purge(ctx context.Context, app spec.App, env string) error {
	env, ns, err := where(app, env)
	if err != nil {
		return err
	}
	sel := metav1.ListOptions{LabelSelector: LabelManagedBy + "=ship," + LabelApp + "=" + app.Name + "," + LabelEnv + "=" + env}
	var errs []error
	del := func(kind, name string, err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s %s/%s: %w", kind, ns, name, err))
		}
	}
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	if l, err := r.cs.AppsV1().Deployments(ns).List(ctx, sel); err != nil {
		errs = append(errs, err)
	} else {
		for _, o := range l.Items {
			del("deployment", o.Name, r.cs.AppsV1().Deployments(ns).Delete(ctx, o.Name, opts))
		}
	}
	if l, err := r.cs.CoreV1().Services(ns).List(ctx, sel); err != nil {
		errs = append(errs, err)
	} else {
		for _, o := range l.Items {
			del("service", o.Name, r.cs.CoreV1().Services(ns).Delete(ctx, o.Name, opts))
		}
	}
	if l, err := r.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).List(ctx, sel); err != nil {
		errs = append(errs, err)
	} else {
		for _, o := range l.Items {
			del("hpa", o.Name, r.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Delete(ctx, o.Name, opts))
		}
	}
	if l, err := r.cs.PolicyV1().PodDisruptionBudgets(ns).List(ctx, sel); err != nil {
		errs = append(errs, err)
	} else {
		for _, o := range l.Items {
			del("pdb", o.Name, r.cs.PolicyV1().PodDisruptionBudgets(ns).Delete(ctx, o.Name, opts))
		}
	}
	if app.Kube.Gateway != nil {
		if l, err := r.gw.GatewayV1().HTTPRoutes(ns).List(ctx, sel); err != nil {
			errs = append(errs, err)
		} else {
			for _, o := range l.Items {
				del("httproute", o.Name, r.gw.GatewayV1().HTTPRoutes(ns).Delete(ctx, o.Name, opts))
			}
		}
	}
	return errors.Join(errs...)
}
