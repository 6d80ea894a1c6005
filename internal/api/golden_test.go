package api

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

// The API's wire format is fixed by the golden files in testdata/golden:
// a change to a JSON name, a weight's form (a percentage number) or an
// event's payload shows up as a diff of a file, not as a surprise in
// someone's script. SHIP_UPDATE_GOLDEN=1 rewrites them; review the diff.
// Each body must also read back into the same Go value (requests are
// decoded by the server, answers by the client).
func TestWireFormatIsFixedByGoldenFiles(t *testing.T) {
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	inForce := release.Weight(2000)
	rel := release.Release{ID: 12, App: "resizer", Env: "production", Kind: release.KindDeploy, Version: "v2", FromVersion: "v1",
		Strategy: release.StrategyCanary, Steps: []release.Weight{10, 100, 1000, 5000, 10000}, HoldAt: 0, State: release.Progressing,
		Step: 1, Weight: 100, Reason: "step 2 of 5: 1% of traffic to v2", Actor: "alice", Source: release.SourceCLI,
		Created: at, Updated: at.Add(time.Minute), StepStarted: at.Add(time.Minute)}
	analysisView := release.Analysis{StableRequests: 9900, StableErrorRate: 0.001, CanaryRequests: 100, CanaryErrorRate: 0,
		StableP99Ms: 41.5, CanaryP99Ms: 39, Verdict: "pass", Reason: "canary error rate 0.0% (0 of 100 requests) is within 5.0%"}
	lock := release.Lock{App: "resizer", Env: "production", Reason: "black friday", Actor: "bob", Since: at}
	golden := map[string]any{
		"release.json": rel,
		"event-created.json": release.Event{ID: 40, ReleaseID: 12, App: "resizer", Env: "production", Type: release.EvCreated,
			State: release.Pending, Message: "alice via cli deploys v2 to resizer/production: canary 0.1% → 1% → 10% → 50% → 100% from v1",
			Actor: "alice", Time: at, Data: &release.EventData{Version: "v2", From: "v1", Strategy: release.StrategyCanary,
				Steps: rel.Steps, Source: release.SourceCLI}},
		"event-analysis.json": release.Event{ID: 41, ReleaseID: 12, App: "resizer", Env: "production", Type: release.EvAnalysis,
			State: release.Progressing, Step: 1, Weight: 100, Message: "pass: " + analysisView.Reason, Actor: "ship", Time: at,
			Data: &release.EventData{Analysis: &analysisView}},
		"event-weight.json": release.Event{ID: 42, ReleaseID: 12, App: "resizer", Env: "production", Type: release.EvWeight,
			State: release.Paused, Weight: 100, Message: "20% of traffic to v2 in force", Actor: "ship", Time: at,
			Data: &release.EventData{Asked: 100, InForce: &inForce}},
		"event-scaled.json": release.Event{ID: 43, App: "resizer", Env: "production", Type: release.EvScaled,
			Message: "bob via slack scaled resizer/production stable to 4 instances (was 2)", Actor: "bob", Time: at,
			Data: &release.EventData{Replicas: 4, Was: 2, Source: release.SourceSlack}},
		"event-denied.json": release.Event{ID: 44, App: "resizer", Env: "production", Type: release.EvDenied,
			Message: "token:alice may not deploy resizer in production: their roles grant deploy in staging only", Actor: "alice", Time: at,
			Data: &release.EventData{Action: "deploy", Identity: "token:alice", Source: release.SourceCLI}},
		"status.json": engine.AppStatus{App: "resizer", Env: "production", Endpoint: "127.0.0.1:8080",
			Stable: engine.TrackView{Version: "v1", Ready: 3, Desired: 3},
			Canary: engine.TrackView{Version: "v2", Ready: 1, Desired: 1, Restarts: 1},
			Weight: 2000, WeightAsked: 100, Release: &rel, Analysis: &analysisView, Lock: &lock,
			Note: "canary: weight 1% asked, 20% given by replica counts (1 canary of 5 instances; no gateway)"},
		"reclaimed.json": engine.Reclaimed{App: "resizer", Env: "production", Release: 12, Tracks: []engine.ReclaimedTrack{
			{Track: string(runtime.Stable), Version: "v1", Replicas: 3, Lost: []string{`"kubectl": deployment resizer-stable .spec.replicas`}},
			{Track: string(runtime.Canary), Version: "v2", Replicas: 1, Lost: []string{}}}},
		"deploy-request.json":   DeployRequest{Env: "production", Version: "v2", Canary: 10},
		"deploy-steps.json":     DeployRequest{Version: "v3", Steps: []release.Weight{100, 5000, 10000}},
		"scale-request.json":    ScaleRequest{Env: "staging", Replicas: engine.Replicas(4)},
		"lock-request.json":     LockRequest{Reason: "black friday"},
		"rollback-request.json": RollbackRequest{To: "v1"},
		"abort-request.json":    AbortRequest{Reason: "p99 up"},
		"error.json":            errorBody{Error: &Error{Code: string(engine.CodeDenied), Message: "token:alice may not deploy resizer in production: their roles grant deploy in staging only"}},
		"whoami.json":           Identity{Name: "alice", Source: release.SourceCLI, ID: "token:alice", Role: "deployer"},
		"token-created.json":    NewTokenResponse{Name: "alice", Role: "deployer", Token: TokenPrefix + "example"},
	}
	update := os.Getenv("SHIP_UPDATE_GOLDEN") == "1"
	for name, v := range golden {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		path := filepath.Join("testdata", "golden", name)
		if update {
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (SHIP_UPDATE_GOLDEN=1 writes it)", name, err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s changed: the API's wire format is a contract.\ngot:\n%s\nwant:\n%s", name, buf.Bytes(), want)
		}
		// And it reads back as the same value.
		back := reflect.New(reflect.TypeOf(v))
		if err := json.Unmarshal(want, back.Interface()); err != nil {
			t.Errorf("%s does not read back: %v", name, err)
		} else if !reflect.DeepEqual(back.Elem().Interface(), v) {
			t.Errorf("%s reads back as %+v, want %+v", name, back.Elem().Interface(), v)
		}
	}
}
