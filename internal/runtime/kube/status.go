package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
	"github.com/shipteam/ship/internal/spec"
)

// Waiting reasons of a container that will not get better by waiting.
var fatalWaiting = map[string]bool{
	"CrashLoopBackOff": true, "ImagePullBackOff": true, "ErrImagePull": true,
	"InvalidImageName": true, "CreateContainerConfigError": true, "CreateContainerError": true,
}

// Status reports both tracks the way `kubectl rollout status` judges a
// Deployment: Ready counts only once the controller has observed the
// current generation, and only pods of the current version.
func (r *Runtime) Status(ctx context.Context, app spec.App, env string) (map[runtime.Track]runtime.TrackStatus, error) {
	env, ns, err := where(app, env)
	if err != nil {
		return nil, err
	}
	out := map[runtime.Track]runtime.TrackStatus{}
	for _, t := range runtime.Tracks {
		ts, err := r.trackStatus(ctx, app, env, ns, t)
		if err != nil {
			return nil, err
		}
		out[t] = ts
	}
	if app.Kube.Gateway == nil {
		c := out[runtime.Canary]
		if note, err := r.ratioNote(ctx, app, ns); err != nil {
			return nil, err
		} else if note != "" && c.Version != "" {
			c.Note = note
			out[runtime.Canary] = c
		}
	}
	return out, nil
}

func (r *Runtime) trackStatus(ctx context.Context, app spec.App, env, ns string, t runtime.Track) (runtime.TrackStatus, error) {
	ts := runtime.TrackStatus{Track: t}
	d, err := r.getDeployment(ctx, ns, trackName(app, t))
	if apierrors.IsNotFound(err) {
		return ts, nil
	}
	if err != nil {
		return ts, fmt.Errorf("get deployment %s/%s: %w", ns, trackName(app, t), err)
	}
	if d.DeletionTimestamp != nil {
		return ts, nil // being removed: no instances to count on
	}
	version := d.Spec.Template.Labels[LabelVersion]
	ts.Version = version
	ts.Drift = r.drift(app, env, d, version)
	ts.Desired = 1
	if d.Spec.Replicas != nil {
		ts.Desired = int(*d.Spec.Replicas)
	}
	done, ready := rollout(d)
	if done {
		ts.Ready = ts.Desired
	} else {
		ts.Ready = ready
	}
	for _, c := range d.Status.Conditions {
		switch {
		case c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" && d.Status.ObservedGeneration >= d.Generation:
			ts.Failed, ts.Reason = true, c.Reason+": "+c.Message
		case c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue:
			ts.Failed, ts.Reason = true, c.Reason+": "+c.Message
		}
	}
	pods, err := r.listPods(ctx, ns, labels.Set{LabelApp: app.Name, LabelTrack: string(t), LabelVersion: version})
	if err != nil {
		return ts, fmt.Errorf("list pods of %s/%s: %w", ns, trackName(app, t), err)
	}
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			ts.Restarts += int(cs.RestartCount)
			if w := cs.State.Waiting; w != nil && fatalWaiting[w.Reason] && !ts.Failed {
				ts.Failed, ts.Reason = true, fmt.Sprintf("pod %s: %s: %s", p.Name, w.Reason, w.Message)
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable && !ts.Failed {
				ts.Failed, ts.Reason = true, fmt.Sprintf("pod %s: %s: %s", p.Name, c.Reason, strings.TrimSpace(c.Message))
			}
		}
	}
	return ts, nil
}

// rollout mirrors kubectl rollout status: done when the controller has seen
// the current generation and every desired pod is updated and available
// with no old pod left; otherwise how many updated pods are surely
// available, and fewer than desired, since the engine reads Ready >=
// desired as "rolled out".
func rollout(d *appsv1.Deployment) (done bool, ready int) {
	st := d.Status
	if st.ObservedGeneration < d.Generation {
		return false, 0
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	if st.UpdatedReplicas < want || st.Replicas > st.UpdatedReplicas || st.AvailableReplicas < st.UpdatedReplicas {
		// AvailableReplicas counts old pods too: at worst every old pod
		// is among them. (min of the three counts overstated it: 2 updated,
		// 3 ready, 2 available with one old pod is 1 updated available.)
		old := max(st.Replicas-st.UpdatedReplicas, 0)
		sure := min(st.UpdatedReplicas, st.ReadyReplicas, max(st.AvailableReplicas-old, 0))
		return false, int(max(min(sure, want-1), 0))
	}
	return true, int(want)
}

// ratioNote says what share the replica counts give when it is not the
// share asked of the router.
func (r *Runtime) ratioNote(ctx context.Context, app spec.App, ns string) (string, error) {
	svc, err := r.getService(ctx, ns, app.Name)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("get service %s/%s: %w", ns, app.Name, err)
	}
	sh, err := r.replicaShare(ctx, app, ns, svc)
	if err != nil {
		return "", err
	}
	if sh.asked <= 0 || sh.asked >= release.Full || sh.effective == sh.asked {
		return "", nil
	}
	return fmt.Sprintf("weight %s asked, %s given by replica counts (%d canary of %d instances; no gateway)",
		sh.asked, sh.effective, sh.canary, sh.stable+sh.canary), nil
}

// imagePath is where a Deployment's managedFields hold the app container's
// image.
var imagePath = []string{"f:spec", "f:template", "f:spec", "f:containers", `k:{"name":"app"}`, "f:image"}

// drift names an image of the app container other than the one ship
// renders for the version label in env: a hand edit (`kubectl set image`) that
// the version label alone does not show. Who made it is read from
// managedFields: the managers other than ship that hold the image field.
func (r *Runtime) drift(app spec.App, env string, d *appsv1.Deployment, version string) string {
	if version == "" {
		return ""
	}
	want, err := app.ImageFor(version, env)
	if err != nil {
		return "" // not an image ship could have rendered; nothing to compare
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name != "app" || c.Image == want {
			continue
		}
		msg := fmt.Sprintf("image %s instead of %s", c.Image, want)
		if by := holders(d, r.fm, imagePath); len(by) > 0 {
			msg += " set by " + strings.Join(by, ", ")
		}
		return msg
	}
	return ""
}

// holders lists, quoted, the field managers other than self whose
// managedFields entry of d (the main resource) holds the field at path.
func holders(d *appsv1.Deployment, self string, path []string) []string {
	var out []string
	for _, m := range d.ManagedFields {
		if m.Manager == self || m.Subresource != "" || m.FieldsV1 == nil {
			continue
		}
		var node map[string]any
		if err := json.Unmarshal(m.FieldsV1.Raw, &node); err != nil {
			continue
		}
		found := true
		for _, p := range path {
			next, ok := node[p].(map[string]any)
			if !ok {
				found = false
				break
			}
			node = next
		}
		if q := fmt.Sprintf("%q", m.Manager); found && !slices.Contains(out, q) {
			out = append(out, q)
		}
	}
	return out
}
