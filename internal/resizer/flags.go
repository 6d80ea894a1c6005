package resizer

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// setting is one command-line flag and its environment variable.
type setting struct {
	flag, env, usage string
	value            flag.Value
}

// settings lists every flag; flag names and env names are an interface that
// ship and scripts rely on (see docs/resizer.md), so change them only with care.
func settings(c *Config) []setting {
	return []setting{
		{"addr", "RESIZER_ADDR", "listen address HOST:PORT (port 0 picks a free port)", (*stringValue)(&c.Addr)},
		{"version-name", "RESIZER_VERSION", "version reported in /metrics build_info, X-Resizer-Version and ETags (overrides the build-time version)", (*stringValue)(&c.Version)},
		{"allow-private-sources", "RESIZER_ALLOW_PRIVATE_SOURCES", "let url= sources reach loopback, private, link-local and cloud-metadata addresses (tests and benchmarks only)", (*boolValue)(&c.AllowPrivateSources)},
		{"signing-key", "RESIZER_SIGNING_KEY", "HMAC-SHA256 key; when set, GET requests must carry a valid s= signature", (*stringValue)(&c.SigningKey)},
		{"allowed-hosts", "RESIZER_ALLOWED_HOSTS", "comma-separated hosts url= may fetch from; *.example.com matches subdomains; empty allows any public host", (*listValue)(&c.AllowedHosts)},
		{"workers", "RESIZER_WORKERS", "images processed at the same time", (*intValue)(&c.Workers)},
		{"queue", "RESIZER_QUEUE", "requests admitted beyond the workers (reading a body, fetching or waiting); more get 503", (*intValue)(&c.Queue)},
		{"retry-after", "RESIZER_RETRY_AFTER", "Retry-After sent with 503 when the queue is full", (*durationValue)(&c.RetryAfter)},
		{"max-input-bytes", "RESIZER_MAX_INPUT_BYTES", "largest request body or fetched source in bytes", (*int64Value)(&c.MaxInputBytes)},
		{"max-input-pixels", "RESIZER_MAX_INPUT_PIXELS", "largest source width×height, read from the header before decoding", (*int64Value)(&c.MaxInputPixels)},
		{"max-output-pixels", "RESIZER_MAX_OUTPUT_PIXELS", "largest output width×height", (*int64Value)(&c.MaxOutputPixels)},
		{"max-dimension", "RESIZER_MAX_DIMENSION", "largest w or h a request may ask for", (*intValue)(&c.MaxDimension)},
		{"max-frames", "RESIZER_MAX_FRAMES", "most frames kept from an animated source", (*intValue)(&c.MaxFrames)},
		{"read-header-timeout", "RESIZER_READ_HEADER_TIMEOUT", "time allowed to read request headers", (*durationValue)(&c.ReadHeaderTimeout)},
		{"read-timeout", "RESIZER_READ_TIMEOUT", "time allowed to read a whole request, body included (slow clients get 408)", (*durationValue)(&c.ReadTimeout)},
		{"write-timeout", "RESIZER_WRITE_TIMEOUT", "time allowed from the end of the headers to the end of the response", (*durationValue)(&c.WriteTimeout)},
		{"idle-timeout", "RESIZER_IDLE_TIMEOUT", "keep-alive connections idle longer are closed", (*durationValue)(&c.IdleTimeout)},
		{"request-timeout", "RESIZER_REQUEST_TIMEOUT", "processing deadline once a worker is held (504 after)", (*durationValue)(&c.RequestTimeout)},
		{"shutdown-timeout", "RESIZER_SHUTDOWN_TIMEOUT", "on SIGTERM, how long in-flight requests may take to finish", (*durationValue)(&c.ShutdownTimeout)},
		{"drain-delay", "RESIZER_DRAIN_DELAY", "on SIGTERM, how long /readyz reports 503 before the listener closes", (*durationValue)(&c.DrainDelay)},
		{"source-timeout", "RESIZER_SOURCE_TIMEOUT", "time allowed to fetch a url= source, redirects included", (*durationValue)(&c.SourceTimeout)},
		{"max-redirects", "RESIZER_MAX_REDIRECTS", "redirects followed when fetching a url= source", (*intValue)(&c.MaxRedirects)},
		{"cache-max-age", "RESIZER_CACHE_MAX_AGE", "Cache-Control max-age of image responses", (*durationValue)(&c.CacheMaxAge)},
	}
}

// ParseFlags fills cfg from the environment (looked up with getenv) and then
// from args; a flag beats its environment variable, which beats the value
// already in cfg. A malformed value is an error, never a silent default; all
// errors are reported together. flag.ErrHelp is returned for -h/--help after
// the usage text is written to out (stdout: help is not an error).
func ParseFlags(cfg *Config, name string, args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// The flag package's own messages are discarded: errors are returned
	// (joined with the env errors) and the usage goes to out only for --help.
	fs.SetOutput(io.Discard)
	var errs []error
	sets := settings(cfg)
	for _, s := range sets {
		def := s.value.String()
		if v := getenv(s.env); v != "" {
			if err := s.value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("env %s=%q: %w", s.env, v, err))
			}
		}
		fs.Var(s.value, s.flag, s.usage)
		fs.Lookup(s.flag).DefValue = def
	}
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeUsage(out, name, sets, fs)
			return err
		}
		errs = append(errs, err)
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if *showVersion {
		return ErrShowVersion
	}
	return nil
}

// ErrShowVersion is returned by ParseFlags when --version was given.
var ErrShowVersion = errors.New("show version")

func writeUsage(out io.Writer, name string, sets []setting, fs *flag.FlagSet) {
	fmt.Fprintf(out, "usage: %s [flags]\n       %s sign [--signing-key KEY] PATH?QUERY\n\n", name, name)
	fmt.Fprintf(out, "The image-resizing HTTP service. Every flag also reads the environment\nvariable shown; a flag given on the command line wins.\n\nflags:\n")
	for _, s := range sets {
		f := fs.Lookup(s.flag)
		def := ""
		if f.DefValue != "" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(out, "  --%s  [$%s]\n      %s%s\n", s.flag, s.env, s.usage, def)
	}
	fmt.Fprintf(out, "  --version\n      print the version and exit\n")
}

type stringValue string

func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }

type boolValue bool

func (v *boolValue) String() string { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("not a boolean")
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) IsBoolFlag() bool { return true }

type intValue int

func (v *intValue) String() string { return strconv.Itoa(int(*v)) }
func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("not an integer")
	}
	*v = intValue(n)
	return nil
}

type int64Value int64

func (v *int64Value) String() string { return strconv.FormatInt(int64(*v), 10) }
func (v *int64Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer")
	}
	*v = int64Value(n)
	return nil
}

type durationValue time.Duration

func (v *durationValue) String() string { return time.Duration(*v).String() }
func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("not a duration (like 10s)")
	}
	*v = durationValue(d)
	return nil
}

type listValue []string

func (v *listValue) String() string { return strings.Join(*v, ",") }
func (v *listValue) Set(s string) error {
	*v = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*v = append(*v, strings.ToLower(p))
		}
	}
	return nil
}
