package kube

import (
	"github.com/shipteam/ship/internal/release"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/shipteam/ship/internal/spec"
)

func TestWeights(t *testing.T) {
	for _, c := range []struct {
		pct            release.Weight
		stable, canary int32
	}{
		{0, 1, 0}, {100, 99, 1}, {10, 999, 1}, {1, 9999, 1}, {1000, 9, 1},
		{2500, 3, 1}, {5000, 1, 1}, {3333, 6667, 3333}, {9990, 1, 999}, {10000, 0, 1},
	} {
		s, k := weights(c.pct)
		if s != c.stable || k != c.canary {
			t.Errorf("weights(%v) = %d/%d, want %d/%d", c.pct, s, k, c.stable, c.canary)
		}
	}
}

func TestHPABounds(t *testing.T) {
	for _, c := range []struct {
		as       spec.Autoscale
		replicas int
		min, max int32
	}{
		{spec.Autoscale{Min: 2, Max: 5}, 1, 2, 5},    // never below the spec's floor
		{spec.Autoscale{Min: 2, Max: 5}, 3, 3, 5},    // scale moves the floor
		{spec.Autoscale{Min: 2, Max: 5}, 10, 10, 10}, // and lifts the ceiling
		{spec.Autoscale{Min: 0, Max: 0}, 0, 1, 1},
	} {
		lo, hi := hpaBounds(c.as, c.replicas)
		if lo != c.min || hi != c.max {
			t.Errorf("hpaBounds(%+v, %d) = %d..%d, want %d..%d", c.as, c.replicas, lo, hi, c.min, c.max)
		}
	}
}

func TestRollout(t *testing.T) {
	three := int32(3)
	dep := func(gen, observed, replicas, updated, ready, available int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: int64(gen)},
			Spec:       appsv1.DeploymentSpec{Replicas: &three},
			Status: appsv1.DeploymentStatus{ObservedGeneration: int64(observed), Replicas: replicas,
				UpdatedReplicas: updated, ReadyReplicas: ready, AvailableReplicas: available},
		}
	}
	for name, c := range map[string]struct {
		d     *appsv1.Deployment
		done  bool
		ready int
	}{
		"complete":              {dep(2, 2, 3, 3, 3, 3), true, 3},
		"generation unseen":     {dep(3, 2, 3, 3, 3, 3), false, 0},
		"updating":              {dep(2, 2, 4, 1, 4, 4), false, 1},
		"old pod left":          {dep(2, 2, 4, 3, 3, 3), false, 2}, // 3 available may include the old pod
		"not yet available":     {dep(2, 2, 3, 3, 3, 2), false, 2},
		"new pod not available": {dep(2, 2, 4, 3, 4, 3), false, 2}, // minReadySeconds: 3 updated, 1 old, 3 available
	} {
		done, ready := rollout(c.d)
		if done != c.done || ready != c.ready {
			t.Errorf("%s: rollout = %v, %d; want %v, %d", name, done, ready, c.done, c.ready)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without RestConfig: want an error")
	}
}
