// Command resizer is the image-resizing HTTP service (internal/resizer on the
// libvips pipeline internal/resize). main only wires: flags and env into a
// Config, libvips up, serve until SIGTERM, drain, libvips down.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/shipteam/ship/internal/resize"
	"github.com/shipteam/ship/internal/resizer"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// --version-name (RESIZER_VERSION) overrides it at start.
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "sign" {
		return resizer.SignCommand(args[1:], getenv, stdout, stderr)
	}
	cfg := resizer.DefaultConfig()
	cfg.Version = version
	switch err := resizer.ParseFlags(&cfg, "resizer", args, getenv, stdout); {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, resizer.ErrShowVersion):
		fmt.Fprintln(stdout, cfg.Version)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "resizer: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With("app", "resizer", "version", cfg.Version)

	if err := resize.Startup(resize.Config{}); err != nil {
		log.Error("start libvips", "error", err)
		return 1
	}
	defer resize.Shutdown()
	srv, err := resizer.New(cfg, resizer.Libvips{}, log, nil)
	if err != nil {
		fmt.Fprintf(stderr, "resizer: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := srv.ListenAndServe(ctx); err != nil {
		log.Error("serve", "error", err)
		return 1
	}
	return 0
}
