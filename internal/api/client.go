package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

// Client calls a ship server. Failed calls return *Error when the server
// answered with an error, and a wrapped transport error otherwise (the CLI
// tells the two apart for its exit codes).
type Client struct {
	base    *url.URL
	token   string
	source  release.Source
	http    *http.Client
	timeout time.Duration
}

// ClientConfig configures a Client.
type ClientConfig struct {
	Server string         // base URL, e.g. http://127.0.0.1:7070
	Token  string         // bearer token
	Source release.Source // sent as X-Ship-Source; default api
	// Timeout bounds each call that is not a stream, when the caller's
	// context has no deadline. Default 30s.
	Timeout time.Duration
	HTTP    *http.Client // default: a client without a global timeout (streams)
}

// NewClient checks the server URL and returns a client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Server == "" {
		return nil, errors.New("api client: no server address")
	}
	raw := cfg.Server
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("api client: bad server address %q: want http(s)://host:port", cfg.Server)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	c := &Client{base: u, token: cfg.Token, source: cfg.Source, http: cfg.HTTP, timeout: cfg.Timeout}
	if c.source == "" {
		c.source = release.SourceAPI
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.timeout == 0 {
		c.timeout = 30 * time.Second
	}
	return c, nil
}

// Server returns the base URL the client talks to.
func (c *Client) Server() string { return c.base.String() }

func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body any) (*http.Request, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set(HeaderSource, string(c.source))
	return req, nil
}

// do sends one call and decodes a 2xx answer into out.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, c.base.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb errorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		eb.Error.Status = resp.StatusCode
		return eb.Error
	}
	msg := strings.TrimSpace(string(b))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	if msg == "" {
		msg = resp.Status
	}
	return &Error{Status: resp.StatusCode, Code: codeForStatus(resp.StatusCode), Message: msg}
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusMethodNotAllowed:
		return string(engine.CodeInvalid)
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return string(engine.CodeDenied)
	case http.StatusNotFound:
		return string(engine.CodeNotFound)
	case http.StatusConflict:
		return string(engine.CodeConflict)
	case http.StatusLocked:
		return string(engine.CodeLocked)
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return CodeUnavailable
	}
	return string(engine.CodeInternal)
}

func appPath(app, suffix string) string {
	return "/v1/apps/" + url.PathEscape(app) + suffix
}

func envQuery(env string) url.Values {
	q := url.Values{}
	if env != "" {
		q.Set("env", env)
	}
	return q
}

// Whoami returns who the token belongs to.
func (c *Client) Whoami(ctx context.Context) (Identity, error) {
	var id Identity
	err := c.do(ctx, http.MethodGet, "/v1/whoami", nil, nil, &id)
	return id, err
}

// Apps lists every app in every environment with its status.
func (c *Client) Apps(ctx context.Context) ([]engine.AppStatus, error) {
	var out []engine.AppStatus
	err := c.do(ctx, http.MethodGet, "/v1/apps", nil, nil, &out)
	return out, err
}

// Status returns one app's status in env ("" = its first environment).
func (c *Client) Status(ctx context.Context, app, env string) (engine.AppStatus, error) {
	var out engine.AppStatus
	err := c.do(ctx, http.MethodGet, appPath(app, ""), envQuery(env), nil, &out)
	return out, err
}

// Deploy starts a release of req.Version.
func (c *Client) Deploy(ctx context.Context, app string, req DeployRequest) (release.Release, error) {
	var out release.Release
	err := c.do(ctx, http.MethodPost, appPath(app, "/deploy"), nil, req, &out)
	return out, err
}

// Promote moves the active release on (past a --canary hold) to 100%.
func (c *Client) Promote(ctx context.Context, app, env string) (release.Release, error) {
	var out release.Release
	err := c.do(ctx, http.MethodPost, appPath(app, "/promote"), nil, PromoteRequest{Env: env}, &out)
	return out, err
}

// Abort stops the active release and puts the canary weight to 0.
func (c *Client) Abort(ctx context.Context, app, env, reason string) (release.Release, error) {
	var out release.Release
	err := c.do(ctx, http.MethodPost, appPath(app, "/abort"), nil, AbortRequest{Env: env, Reason: reason}, &out)
	return out, err
}

// Rollback returns to the previous good release, or to version to.
func (c *Client) Rollback(ctx context.Context, app, env, to string) (release.Release, error) {
	var out release.Release
	err := c.do(ctx, http.MethodPost, appPath(app, "/rollback"), nil, RollbackRequest{Env: env, To: to}, &out)
	return out, err
}

// Scale sets the stable track's instance count; it returns the new status.
func (c *Client) Scale(ctx context.Context, app, env string, replicas int) (engine.AppStatus, error) {
	var out engine.AppStatus
	err := c.do(ctx, http.MethodPost, appPath(app, "/scale"), nil, ScaleRequest{Env: env, Replicas: &replicas}, &out)
	return out, err
}

// Reclaim forces ship's recorded state back onto app's tracks in env,
// taking back fields changed by hand; it reports who lost which field.
func (c *Client) Reclaim(ctx context.Context, app, env string) (engine.Reclaimed, error) {
	var out engine.Reclaimed
	err := c.do(ctx, http.MethodPost, appPath(app, "/reclaim"), envQuery(env), nil, &out)
	return out, err
}

// Lock blocks deploys of app in env.
func (c *Client) Lock(ctx context.Context, app, env, reason string) (engine.AppStatus, error) {
	var out engine.AppStatus
	err := c.do(ctx, http.MethodPost, appPath(app, "/lock"), nil, LockRequest{Env: env, Reason: reason}, &out)
	return out, err
}

// Unlock lifts a lock.
func (c *Client) Unlock(ctx context.Context, app, env string) (engine.AppStatus, error) {
	var out engine.AppStatus
	err := c.do(ctx, http.MethodDelete, appPath(app, "/lock"), envQuery(env), nil, &out)
	return out, err
}

// History lists the app's releases, newest first.
func (c *Client) History(ctx context.Context, app, env string, limit int) ([]release.Release, error) {
	q := envQuery(env)
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out []release.Release
	err := c.do(ctx, http.MethodGet, appPath(app, "/history"), q, nil, &out)
	return out, err
}

// Logs returns up to n recent log lines of the app's instances.
func (c *Client) Logs(ctx context.Context, app, env, version string, n int) ([]runtime.LogLine, error) {
	q := envQuery(env)
	if version != "" {
		q.Set("version", version)
	}
	if n > 0 {
		q.Set("n", strconv.Itoa(n))
	}
	var out []runtime.LogLine
	err := c.do(ctx, http.MethodGet, appPath(app, "/logs"), q, nil, &out)
	return out, err
}

// Release returns one release by id.
func (c *Client) Release(ctx context.Context, id int64) (release.Release, error) {
	var out release.Release
	err := c.do(ctx, http.MethodGet, "/v1/releases/"+strconv.FormatInt(id, 10), nil, nil, &out)
	return out, err
}

// ErrStop, returned by an event callback, ends Events without an error.
var ErrStop = errors.New("stop")

// ErrStreamClosed is returned by Events when the server closed the stream.
var ErrStreamClosed = errors.New("event stream closed by the server")

// EventsQuery selects the events to stream.
type EventsQuery struct {
	EventFilter
	// After replays stored events with an id above it first; -1 streams
	// live events only.
	After int64
}

// Events streams events to fn until ctx ends (returns ctx.Err()), fn
// returns an error (ErrStop → nil), or the stream ends (ErrStreamClosed,
// or a transport error). It does not reconnect; Follow does.
func (c *Client) Events(ctx context.Context, q EventsQuery, fn func(release.Event) error) error {
	_, err := c.stream(ctx, q, nil, fn)
	return err
}

// Follow is Events that reconnects when the stream breaks (a restarting
// server), resuming after the last event seen, until ctx ends, fn stops it,
// or no connection succeeds for giveUp. onRetry, when set, is told about
// each broken stream.
func (c *Client) Follow(ctx context.Context, q EventsQuery, giveUp time.Duration, onRetry func(error), fn func(release.Event) error) error {
	lastOK := time.Now()
	backoff := 100 * time.Millisecond
	for {
		connected := false
		last, err := c.stream(ctx, q, func() { connected = true }, fn)
		if last > q.After {
			q.After = last
		}
		if err == nil || ctx.Err() != nil {
			return err
		}
		var ae *Error
		if errors.As(err, &ae) && ae.Status != http.StatusServiceUnavailable && ae.Status != http.StatusBadGateway {
			return err // the server answered "no": retrying will not help
		}
		if !errors.Is(err, ErrStreamClosed) && !isTransport(err) {
			return err // fn's own error
		}
		if connected {
			lastOK = time.Now()
			backoff = 100 * time.Millisecond
		}
		if time.Since(lastOK) > giveUp {
			return err
		}
		if onRetry != nil {
			onRetry(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

func isTransport(err error) bool {
	var te *transportError
	return errors.As(err, &te)
}

// stream runs one SSE connection; it returns the id of the last event
// delivered to fn.
func (c *Client) stream(ctx context.Context, q EventsQuery, onConnect func(), fn func(release.Event) error) (int64, error) {
	v := url.Values{}
	if q.App != "" {
		v.Set("app", q.App)
	}
	if q.Env != "" {
		v.Set("env", q.Env)
	}
	if q.ReleaseID != 0 {
		v.Set("release", strconv.FormatInt(q.ReleaseID, 10))
	}
	if q.After >= 0 {
		v.Set("after", strconv.FormatInt(q.After, 10))
	}
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/events", v, nil)
	if err != nil {
		return q.After, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return q.After, ctx.Err()
		}
		return q.After, &transportError{fmt.Errorf("events %s: %w", c.base.Host, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return q.After, readError(resp)
	}
	if onConnect != nil {
		onConnect()
	}
	last := q.After
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var event string
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() == 0 {
				event = ""
				continue
			}
			payload := data.String()
			data.Reset()
			if event == "error" {
				var eb errorBody
				if json.Unmarshal([]byte(payload), &eb) == nil && eb.Error != nil {
					return last, eb.Error
				}
				return last, fmt.Errorf("event stream error: %s", payload)
			}
			event = ""
			var ev release.Event
			if err := json.Unmarshal([]byte(payload), &ev); err != nil {
				return last, fmt.Errorf("decode event: %w", err)
			}
			if err := fn(ev); err != nil {
				if errors.Is(err, ErrStop) {
					return last, nil
				}
				return last, err
			}
			if ev.ID > last {
				last = ev.ID
			}
		case strings.HasPrefix(line, ":"):
			// comment / heartbeat
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	if ctx.Err() != nil {
		return last, ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return last, &transportError{fmt.Errorf("events %s: %w", c.base.Host, err)}
	}
	return last, &transportError{ErrStreamClosed}
}
