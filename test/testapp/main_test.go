package main

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestParseConfigTakesBehaviourFromVersionName(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	tests := []struct {
		args    []string
		want    config
		wantErr bool
	}{
		{args: []string{"--addr", "127.0.0.1:1", "--version-name", "v1"}, want: config{addr: "127.0.0.1:1", version: "v1"}},
		{args: []string{"--addr", "127.0.0.1:1", "--version-name", "v2-fail50"}, want: config{addr: "127.0.0.1:1", version: "v2-fail50", failRate: 0.5}},
		{args: []string{"--addr", "127.0.0.1:1", "--version-name", "v2-unhealthy"}, want: config{addr: "127.0.0.1:1", version: "v2-unhealthy", neverHealthy: true}},
		{args: []string{"--addr", "127.0.0.1:1", "--version-name", "crash"}, want: config{addr: "127.0.0.1:1", version: "crash", exitAtOnce: true}},
		{args: []string{"--addr", "127.0.0.1:1", "--version-name", "slow"}, want: config{addr: "127.0.0.1:1", version: "slow", slow: 50 * time.Millisecond}},
		{args: []string{"--addr", "127.0.0.1:1", "--version-name", "v3-late"}, want: config{addr: "127.0.0.1:1", version: "v3-late", readyAfter: time.Second}},
		{args: []string{"--addr", "127.0.0.1:1", "--version-name", "v3-stubborn"}, want: config{addr: "127.0.0.1:1", version: "v3-stubborn", ignoreTerm: true}},
		{args: []string{"--addr", "127.0.0.1:1", "--fail-rate", "0.1"}, want: config{addr: "127.0.0.1:1", version: "dev", failRate: 0.1}},
		{args: []string{"--addr", "127.0.0.1:1", "--fail-rate", "2"}, wantErr: true},
		{args: []string{"--version-name", "v1"}, wantErr: true},
		{args: []string{"--bogus"}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseConfig(tt.args, getenv)
		if (err != nil) != tt.wantErr {
			t.Errorf("%v: err = %v, wantErr %v", tt.args, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && got != tt.want {
			t.Errorf("%v: got %+v, want %+v", tt.args, got, tt.want)
		}
	}
	env["TESTAPP_ADDR"] = "127.0.0.1:2"
	env["TESTAPP_VERSION"] = "e1"
	env["TESTAPP_FAIL_RATE"] = "0.25"
	got, err := parseConfig(nil, getenv)
	if err != nil || got != (config{addr: "127.0.0.1:2", version: "e1", failRate: 0.25}) {
		t.Errorf("from env: %+v, %v", got, err)
	}
	env["TESTAPP_FAIL_RATE"] = "lots"
	if _, err := parseConfig(nil, getenv); err == nil {
		t.Error("malformed TESTAPP_FAIL_RATE accepted")
	}
}

func TestFailRateIsExact(t *testing.T) {
	for _, rate := range []float64{0, 0.01, 0.25, 0.5, 1} {
		f := &failer{rate: rate}
		fails := 0
		for i := 0; i < 1000; i++ {
			if _, fail := f.next(); fail {
				fails++
			}
		}
		if want := int(rate * 1000); fails != want {
			t.Errorf("rate %v: %d of 1000 failed, want %d", rate, fails, want)
		}
	}
}

func TestHandlerAnswersVersionAndHealth(t *testing.T) {
	srv := httptest.NewServer(handler(config{version: "v7-fail50", failRate: 0.5, neverHealthy: true}, log.New(io.Discard, "", 0), &control{close: func() {}}))
	defer srv.Close()
	codes := map[int]int{}
	for i := 0; i < 10; i++ {
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if v := resp.Header.Get("X-Version"); v != "v7-fail50" {
			t.Fatalf("X-Version = %q", v)
		}
		codes[resp.StatusCode]++
	}
	if codes[200] != 5 || codes[500] != 5 {
		t.Errorf("codes %v, want 5x200 and 5x500", codes)
	}
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("/healthz = %d, want 503", resp.StatusCode)
	}
}
