package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/shipteam/ship/internal/server"
)

// runServe is `ship serve`: flags over env (SHIP_ADDR, SHIP_DATA,
// SHIP_APPS) over defaults.
func runServe(ctx context.Context, args []string, env Env) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	addr := fs.String("addr", first(env.Getenv("SHIP_ADDR"), "127.0.0.1:7070"), "API address `HOST:PORT` (env SHIP_ADDR)")
	data := fs.String("data", first(env.Getenv("SHIP_DATA"), ".ship"), "data `DIR`: ship.db, admin-token, instances (env SHIP_DATA)")
	apps := fs.String("apps", first(env.Getenv("SHIP_APPS"), "apps"), "app specs `DIR` (env SHIP_APPS)")
	rtName := fs.String("runtime", first(env.Getenv("SHIP_RUNTIME"), "local"), "where apps run: local (processes behind ship's router) or kube (env SHIP_RUNTIME)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig `FILE` for --runtime kube (default $KUBECONFIG, ~/.kube/config, in-cluster)")
	kubeCtx := fs.String("kube-context", "", "kubeconfig context for --runtime kube (default: the current one)")
	promURL := fs.String("prometheus", env.Getenv("SHIP_PROMETHEUS_URL"), "Prometheus `URL` whose metrics judge canaries on --runtime kube (env SHIP_PROMETHEUS_URL; docs/kubernetes.md)")
	slackCfg := fs.String("slack-config", env.Getenv("SHIP_SLACK_CONFIG"), "ChatOps config `FILE` (env SHIP_SLACK_CONFIG; docs/slack.md); SHIP_SLACK_* env vars overlay it")
	authCfg := fs.String("auth-config", env.Getenv("SHIP_AUTH_CONFIG"), "auth config `FILE`: roles and grants for every door (env SHIP_AUTH_CONFIG; docs/permissions.md)")
	logFormat := fs.String("log-format", first(env.Getenv("SHIP_LOG_FORMAT"), "auto"), "log format: auto (text on a terminal, else JSON), text or json")
	logLevel := fs.String("log-level", first(env.Getenv("SHIP_LOG_LEVEL"), "info"), "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(env.Stderr, "usage: ship serve [--addr HOST:PORT] [--data DIR] [--apps DIR] [--runtime local|kube] [--kubeconfig FILE] [--kube-context NAME] [--prometheus URL] [--slack-config FILE] [--auth-config FILE] [--log-format auto|text|json] [--log-level LEVEL]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "ship serve: unexpected argument %q\n", fs.Arg(0))
		return ExitUsage
	}
	log, err := newLogger(env.Stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(env.Stderr, "ship serve: %v\n", err)
		return ExitUsage
	}
	err = server.Run(ctx, server.Config{Addr: *addr, DataDir: *data, AppsDir: *apps, SlackConfig: *slackCfg, AuthConfig: *authCfg,
		Runtime: *rtName, Kube: server.KubeConfig{Kubeconfig: *kubeconfig, Context: *kubeCtx, PrometheusURL: *promURL}, Logger: log, Stdout: env.Stdout})
	if err != nil {
		fmt.Fprintf(env.Stderr, "ship serve: %v\n", err)
		return ExitFailed
	}
	return ExitOK
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "auto":
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want auto, text or json", format)
}
