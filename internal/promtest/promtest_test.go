package promtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStartScrapesTheGivenTargetAndStopsByPID: the server uses the given
// config (it scrapes our target with its labels, not the system's
// /etc/prometheus config), and is gone after the test's cleanup.
func TestStartScrapesTheGivenTargetAndStopsByPID(t *testing.T) {
	Need(t)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# TYPE promtest_answer gauge\npromtest_answer 42\n")
	}))
	defer target.Close()
	var pid int
	t.Run("server", func(t *testing.T) {
		s := Start(t, StaticConfig("promtest", time.Second, Target{Addr: strings.TrimPrefix(target.URL, "http://"), Labels: map[string]string{"ship_dev_track": "canary"}}))
		pid = s.PID
		deadline := time.Now().Add(20 * time.Second)
		for {
			v, err := instant(s.URL, `promtest_answer{ship_dev_track="canary",job="promtest"}`)
			if err == nil && v == "42" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("target never scraped: %q %v\n%s", v, err, s.Log())
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Only our job: the system's default config (job "prometheus") is not loaded.
		if v, err := instant(s.URL, `count(up{job!="promtest"}) or vector(0)`); err != nil || v != "0" {
			t.Errorf("other scrape jobs: %q %v", v, err)
		}
	})
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("prometheus pid %d still running after cleanup", pid)
	}
}

// instant runs query and returns the value of its only sample.
func instant(base, query string) (string, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", fmt.Errorf("%w: %s", err, body)
	}
	if len(r.Data.Result) != 1 {
		return "", fmt.Errorf("%d samples: %s", len(r.Data.Result), body)
	}
	return fmt.Sprint(r.Data.Result[0].Value[1]), nil
}
