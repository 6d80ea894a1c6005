// Package cli is the ship command line: global flags and configuration,
// one small function per subcommand writing to injected stdout/stderr, and
// live progress while a release runs. Subcommand arguments are parsed by
// internal/command (the grammar Slack and the dashboard share); the CLI
// only adds what is its own: --server, --token, --config, `serve` and
// `version`. It talks to ship only through the API client.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"golang.org/x/term"
	"gopkg.in/yaml.v3"

	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/command"
	"github.com/shipteam/ship/internal/release"
)

// Exit codes, documented in docs/cli.md.
const (
	ExitOK          = 0 // done; a release succeeded or paused where asked (--canary)
	ExitFailed      = 1 // the server refused the command, or the release failed / was aborted
	ExitUsage       = 2 // bad arguments or flags
	ExitUnavailable = 3 // cannot reach the server, or the token was refused
)

// DefaultServer is where the CLI looks for ship when nothing says otherwise.
const DefaultServer = "http://127.0.0.1:7070"

// Version is the ship version; set with -ldflags "-X .../cli.Version=v1.2.3".
var Version = ""

// Env is the process environment the CLI reads (injected for tests).
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// TTY says whether Stdout is a terminal (progress is redrawn in place).
	TTY bool
	// Width is the terminal's width in columns (0 = unknown).
	Width int
	// Dir is the working directory (where ./.ship/admin-token is looked for).
	Dir string
}

// Main runs ship with the real process environment and returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	tty, width := false, 0
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
		if w, _, err := term.GetSize(int(f.Fd())); err == nil {
			width = w
		}
	}
	dir, _ := os.Getwd()
	return Run(ctx, args, Env{Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: os.Getenv, TTY: tty, Width: width, Dir: dir})
}

// globals are the flags every subcommand accepts.
type globals struct {
	server, token, config string
	help                  bool
}

// Run is Main with an explicit environment.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	g, rest, err := splitGlobals(args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "ship: %v\n", err)
		return ExitUsage
	}
	if len(rest) == 0 {
		fmt.Fprint(env.Stdout, usage())
		return ExitUsage
	}
	if rest[0] == "help" && len(rest) == 2 && (rest[1] == "serve" || rest[1] == "token") {
		rest, g.help = rest[1:], true // `ship help serve`: serve's own usage
	}
	switch rest[0] {
	case "serve":
		if g.help {
			// Help is asked for: print serve's flags and start nothing.
			env.Stderr = env.Stdout
			return runServe(ctx, []string{"-help"}, env)
		}
		return runServe(ctx, rest[1:], env)
	case "token":
		return runToken(ctx, g, rest[1:], env)
	case "version", "--version":
		fmt.Fprintf(env.Stdout, "ship %s\n", version())
		return ExitOK
	case "-h", "--help":
		fmt.Fprint(env.Stdout, usage())
		return ExitOK
	}
	if g.help {
		rest = []string{"help", rest[0]} // `ship deploy x --help`: the verb's usage
	}
	cmd, err := command.Parse(rest)
	if err != nil {
		// A UsageError's text already ends with the verb's usage; the
		// grammar leaves the program name to the front end.
		msg := strings.Replace(strings.TrimRight(err.Error(), "\n"), "\n\nusage: ", "\n\nusage: ship ", 1)
		fmt.Fprintf(env.Stderr, "ship: %s\n", msg)
		return ExitUsage
	}
	if cmd.Verb == command.VerbHelp {
		if cmd.HelpTopic != "" {
			fmt.Fprintf(env.Stdout, "usage: ship %s\n", strings.TrimRight(command.Usage(command.Verb(cmd.HelpTopic)), "\n"))
		} else {
			fmt.Fprint(env.Stdout, usage())
		}
		return ExitOK
	}
	client, err := connect(g, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "ship: %v\n", err)
		return ExitUsage
	}
	r := &runner{c: client, env: env, json: cmd.Output == command.OutputJSON}
	return r.exitCode(r.run(ctx, cmd))
}

func usage() string {
	return strings.TrimRight(command.Help(), "\n") + `

ship also has:
  ship serve [--addr HOST:PORT] [--data DIR] [--apps DIR] [--auth-config FILE] ...
                         run ship (ship help serve: every flag)
  ship token create NAME --role ROLE | list | rotate NAME | revoke NAME
                         API tokens for other users (admin role; ship help token)
  ship version

Global flags: --server URL (SHIP_SERVER), --token TOKEN (SHIP_TOKEN), --config FILE
(default ~/.config/ship/config.yaml with "server:" and "token:").
`
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "dev"
}

// splitGlobals takes --server, --token, --config (and -h) out of args,
// wherever they appear, so `ship deploy x v2 --server ...` works too.
// Everything after a lone "--" is left alone.
func splitGlobals(args []string) (globals, []string, error) {
	var g globals
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if a == "-h" || a == "--help" || a == "-help" {
			if len(rest) == 0 {
				rest = append(rest, "--help")
			} else {
				g.help = true
			}
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || (name != "server" && name != "token" && name != "config") {
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return g, nil, fmt.Errorf("flag --%s needs a value", name)
			}
			i++
			val = args[i]
		}
		switch name {
		case "server":
			g.server = val
		case "token":
			g.token = val
		case "config":
			g.config = val
		}
	}
	return g, rest, nil
}

// fileConfig is ~/.config/ship/config.yaml.
type fileConfig struct {
	Server string `yaml:"server"`
	Token  string `yaml:"token"`
}

// connect resolves the server and token (flag, then env, then config file,
// then defaults) and builds the client.
func connect(g globals, env Env) (*api.Client, error) {
	var fc fileConfig
	path, explicit := g.config, g.config != ""
	if !explicit {
		// os.UserConfigDir's rule, read through the injected environment.
		if d := env.Getenv("XDG_CONFIG_HOME"); d != "" {
			path = filepath.Join(d, "ship", "config.yaml")
		} else if h := env.Getenv("HOME"); h != "" {
			path = filepath.Join(h, ".config", "ship", "config.yaml")
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			dec := yaml.NewDecoder(strings.NewReader(string(b)))
			dec.KnownFields(true)
			if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("config %s: %w", path, err)
			}
		case explicit || !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	server := first(g.server, env.Getenv("SHIP_SERVER"), fc.Server, DefaultServer)
	token := first(g.token, env.Getenv("SHIP_TOKEN"), fc.Token)
	if token == "" && isLocal(server) {
		// A developer running `./dev run` in this checkout: use the token
		// ship wrote on its first start.
		dataDir := first(env.Getenv("SHIP_DATA"), ".ship")
		if !filepath.IsAbs(dataDir) {
			dataDir = filepath.Join(env.Dir, dataDir)
		}
		if b, err := os.ReadFile(filepath.Join(dataDir, "admin-token")); err == nil {
			token = strings.TrimSpace(string(b))
		}
	}
	return api.NewClient(api.ClientConfig{Server: server, Token: token, Source: release.SourceCLI})
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func isLocal(server string) bool {
	raw := server
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// exitCode turns the outcome of a subcommand into the process exit code
// and tells the user what went wrong.
func (r *runner) exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var rf *releaseFailed
	if errors.As(err, &rf) {
		fmt.Fprintf(r.env.Stderr, "ship: %v\n", err)
		return ExitFailed
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		fmt.Fprintf(r.env.Stderr, "ship: %s\n", ae.Message)
		switch {
		case ae.Status == 401:
			fmt.Fprintf(r.env.Stderr, "ship: check SHIP_TOKEN / --token for %s\n", r.c.Server())
			return ExitUnavailable
		case ae.Status == 400 || ae.Status == 413:
			return ExitUsage
		case ae.Status == 502 || ae.Status == 503 || ae.Status == 504:
			return ExitUnavailable
		}
		return ExitFailed
	}
	var ue *usageErr
	if errors.As(err, &ue) {
		fmt.Fprintf(r.env.Stderr, "ship: %v\n", err)
		return ExitUsage
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(r.env.Stderr, "ship: interrupted (the server carries on with the release)")
		return ExitFailed
	}
	fmt.Fprintf(r.env.Stderr, "ship: cannot reach ship at %s: %v\n", r.c.Server(), err)
	return ExitUnavailable
}

type usageErr struct{ msg string }

func (e *usageErr) Error() string { return e.msg }
