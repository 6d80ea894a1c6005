package resizer

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseFlagsEnvAndPrecedence(t *testing.T) {
	cfg := DefaultConfig()
	env := envOf(map[string]string{
		"RESIZER_ADDR":                  "127.0.0.1:9000",
		"RESIZER_VERSION":               "from-env",
		"RESIZER_ALLOW_PRIVATE_SOURCES": "true",
		"RESIZER_SIGNING_KEY":           "k",
		"RESIZER_WORKERS":               "3",
		"RESIZER_ALLOWED_HOSTS":         "A.example.com, *.cdn.example.com",
		"RESIZER_READ_TIMEOUT":          "7s",
	})
	err := ParseFlags(&cfg, "resizer", []string{"--addr", "127.0.0.1:9100", "--version-name=v2", "--queue=5"}, env, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:9100" || cfg.Version != "v2" {
		t.Errorf("flags must beat env: addr %q version %q", cfg.Addr, cfg.Version)
	}
	if !cfg.AllowPrivateSources || cfg.SigningKey != "k" || cfg.Workers != 3 || cfg.Queue != 5 || cfg.ReadTimeout != 7*time.Second {
		t.Errorf("env not applied: %+v", cfg)
	}
	if strings.Join(cfg.AllowedHosts, "|") != "a.example.com|*.cdn.example.com" {
		t.Errorf("allowed hosts %q", cfg.AllowedHosts)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
}

func TestParseFlagsReportsEveryMalformedValue(t *testing.T) {
	cfg := DefaultConfig()
	env := envOf(map[string]string{
		"RESIZER_WORKERS":               "many",
		"RESIZER_ALLOW_PRIVATE_SOURCES": "yes please",
		"RESIZER_READ_TIMEOUT":          "30",
	})
	err := ParseFlags(&cfg, "resizer", nil, env, &bytes.Buffer{})
	if err == nil {
		t.Fatal("malformed env accepted")
	}
	for _, want := range []string{"RESIZER_WORKERS", "RESIZER_ALLOW_PRIVATE_SOURCES", "RESIZER_READ_TIMEOUT"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	cfg = DefaultConfig()
	if err := ParseFlags(&cfg, "resizer", []string{"--workers=x"}, envOf(nil), &bytes.Buffer{}); err == nil {
		t.Error("malformed flag accepted")
	}
	if err := ParseFlags(&cfg, "resizer", []string{"extra"}, envOf(nil), &bytes.Buffer{}); err == nil {
		t.Error("stray argument accepted")
	}
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	cfg := DefaultConfig()
	var out bytes.Buffer
	if err := ParseFlags(&cfg, "resizer", []string{"--help"}, envOf(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, s := range settings(&cfg) {
		if !strings.Contains(out.String(), "--"+s.flag+"  [$"+s.env+"]") {
			t.Errorf("help lacks --%s [$%s]", s.flag, s.env)
		}
	}
	if err := ParseFlags(&cfg, "resizer", []string{"--version"}, envOf(nil), &out); !errors.Is(err, ErrShowVersion) {
		t.Errorf("--version: %v", err)
	}
}

func TestValidateJoinsErrors(t *testing.T) {
	c := DefaultConfig()
	c.Addr = "nope"
	c.Workers = 0
	c.Queue = -1
	c.ReadTimeout = 0
	c.AllowedHosts = []string{"http://x"}
	c.MaxDimension = 100000
	c.WriteTimeout = c.RequestTimeout
	err := c.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"addr", "workers", "queue", "read-timeout", "allowed-hosts", "max-dimension", "write-timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("default config invalid: %v", err)
	}
}
