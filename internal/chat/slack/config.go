package slack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Verbs of the buttons and commands that change something. Who may run
// them is decided by the engine's permission policy (internal/authz), not
// here.
const (
	VerbDeploy   = "deploy"
	VerbPromote  = "promote"
	VerbAbort    = "abort"
	VerbRollback = "rollback"
	VerbScale    = "scale"
	VerbLock     = "lock" // also covers unlock
)

// Config is everything the Slack (and Mattermost) front end needs. Load it
// with LoadConfig; the zero value plus tokens is usable (see defaults).
type Config struct {
	// SigningSecret verifies HTTP requests from Slack (env SHIP_SLACK_SIGNING_SECRET).
	SigningSecret string `yaml:"signing_secret"`
	// BotToken (xoxb-) posts and updates messages, reads user groups (env SHIP_SLACK_BOT_TOKEN).
	BotToken string `yaml:"bot_token"`
	// AppToken (xapp-) turns on Socket Mode (env SHIP_SLACK_APP_TOKEN).
	AppToken string `yaml:"app_token"`
	// MattermostToken verifies Mattermost slash commands on the same endpoint
	// (env SHIP_MATTERMOST_TOKEN).
	MattermostToken string `yaml:"mattermost_token"`
	// APIURL is Slack's Web API base (env SHIP_SLACK_API_URL); tests point it at loopback.
	APIURL string `yaml:"api_url"`
	// DefaultChannel receives release messages of apps without a channel of their own.
	DefaultChannel string `yaml:"default_channel"`

	Apps map[string]AppConfig `yaml:"apps"`
	// Roles and Grants are the old place of permissions: ship serve folds
	// them into the auth config's policy with a warning (docs/slack.md,
	// docs/permissions.md). The bot itself does not read them.
	Roles  map[string][]string `yaml:"roles"`
	Grants []Grant             `yaml:"grants"`

	// GroupCacheTTL is how long a user group's members are trusted (default 5m).
	GroupCacheTTL time.Duration `yaml:"group_cache_ttl"`
	// AckBudget is how long a quick read may take before the reply moves to
	// response_url (default 2s; Slack's hard limit is 3s).
	AckBudget time.Duration `yaml:"ack_budget"`
	// MaxAttempts bounds each Slack call, first try included (default 5).
	MaxAttempts int `yaml:"max_attempts"`
	// MaxRetryWait caps one wait, whatever Retry-After says (default 30s).
	MaxRetryWait time.Duration `yaml:"max_retry_wait"`
	// MinUpdateInterval spaces chat.update calls for one message (default 1s).
	MinUpdateInterval time.Duration `yaml:"min_update_interval"`
	// MaxInFlight bounds concurrent asynchronous command work (default 1024:
	// a write command holds a task for its ack and one for its engine call
	// and reply, so a burst of 200 is taken, not refused as busy, even while
	// the replies of the previous burst are still going out).
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxTracked bounds the releases the notifier follows at once (default 1024).
	MaxTracked int `yaml:"max_tracked"`

	// Now and HTTPClient are injected by tests; not part of the file format.
	Now        func() time.Time `yaml:"-"`
	HTTPClient *http.Client     `yaml:"-"`
}

// AppConfig is per-app chat configuration.
type AppConfig struct {
	// Channel (ID, e.g. C0123) receives the app's release messages.
	Channel string `yaml:"channel"`
	// AllowedChannels restricts where commands about the app may be run; empty
	// means anywhere. The app's own Channel is always allowed.
	AllowedChannels []string `yaml:"allowed_channels"`
}

// Grant is a grant in the old form: a role for Slack users and user groups
// on some apps and environments ("*" matches all). See Config.Roles.
type Grant struct {
	Apps   []string `yaml:"apps"`
	Envs   []string `yaml:"envs"`
	Role   string   `yaml:"role"`
	Users  []string `yaml:"users"`  // Slack user IDs, e.g. U0123ABC (never Mattermost users)
	Groups []string `yaml:"groups"` // Slack user group IDs, e.g. S0123ABC
}

const defaultAPIURL = "https://slack.com/api/"

// withDefaults fills unset tunables.
func (c Config) withDefaults() Config {
	if c.APIURL == "" {
		c.APIURL = defaultAPIURL
	}
	if !strings.HasSuffix(c.APIURL, "/") {
		c.APIURL += "/"
	}
	if c.GroupCacheTTL == 0 {
		c.GroupCacheTTL = 5 * time.Minute
	}
	if c.AckBudget == 0 {
		c.AckBudget = 2 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.MaxRetryWait == 0 {
		c.MaxRetryWait = 30 * time.Second
	}
	if c.MinUpdateInterval == 0 {
		c.MinUpdateInterval = time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1024
	}
	if c.MaxTracked == 0 {
		c.MaxTracked = 1024
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HTTPClient == nil {
		// net/http's default keeps 2 idle connections per host: a burst of
		// replies to response_url (hooks.slack.com) or Web API calls would
		// otherwise dial and TLS-handshake anew for nearly every one. The
		// cap on connections per host keeps a burst polite; callers queue
		// for a connection in their own goroutines, never the engine's.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns, t.MaxIdleConnsPerHost, t.MaxConnsPerHost = 64, 32, 32
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: t}
	}
	return c
}

// Enabled reports whether any way in (HTTP signing, Socket Mode, Mattermost)
// is configured; ship serve skips the chat front end otherwise.
func (c Config) Enabled() bool {
	return c.SigningSecret != "" || c.AppToken != "" || c.MattermostToken != ""
}

// SocketMode reports whether the bot connects out through Socket Mode.
func (c Config) SocketMode() bool { return c.AppToken != "" }

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if !c.Enabled() {
		errs = append(errs, errors.New("slack: set signing_secret (HTTP), app_token (Socket Mode) or mattermost_token"))
	}
	if c.BotToken != "" && !strings.HasPrefix(c.BotToken, "xoxb-") {
		errs = append(errs, errors.New("slack: bot_token must be a bot token (xoxb-…)"))
	}
	if c.AppToken != "" && !strings.HasPrefix(c.AppToken, "xapp-") {
		errs = append(errs, errors.New("slack: app_token must be an app-level token (xapp-…)"))
	}
	if c.AppToken != "" && c.BotToken == "" {
		errs = append(errs, errors.New("slack: Socket Mode (app_token) also needs bot_token to post messages"))
	}
	if c.APIURL != "" {
		u, err := url.Parse(c.APIURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("slack: api_url %q is not an http(s) URL", c.APIURL))
		}
	}
	for name, d := range map[string]time.Duration{
		"group_cache_ttl": c.GroupCacheTTL, "ack_budget": c.AckBudget,
		"max_retry_wait": c.MaxRetryWait, "min_update_interval": c.MinUpdateInterval,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("slack: %s must not be negative", name))
		}
	}
	if c.AckBudget > 2500*time.Millisecond {
		errs = append(errs, fmt.Errorf("slack: ack_budget %s leaves no room in Slack's 3s limit (max 2.5s)", c.AckBudget))
	}
	if c.MaxAttempts < 0 || c.MaxInFlight < 0 || c.MaxTracked < 0 {
		errs = append(errs, errors.New("slack: max_attempts, max_in_flight and max_tracked must not be negative"))
	}
	// The old roles/grants are checked where they are folded
	// (authz.FoldSlack); only what the bot needs for them is checked here.
	for i, g := range c.Grants {
		if len(g.Groups) > 0 && c.BotToken == "" {
			errs = append(errs, fmt.Errorf("slack: grants[%d]: groups need bot_token (usergroups:read) to resolve members", i))
		}
	}
	return errors.Join(errs...)
}

// LoadConfig reads a YAML file (path "" means no file) and overlays the
// SHIP_SLACK_* environment variables. Unknown keys are errors.
func LoadConfig(path string) (Config, error) {
	var c Config
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("slack config: %w", err)
		}
		if c, err = ParseConfig(b); err != nil {
			return Config{}, fmt.Errorf("slack config %s: %w", path, err)
		}
	}
	c.ApplyEnv(os.Getenv)
	return c, nil
}

// ParseConfig decodes the YAML format documented in docs/slack.md.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	return c, nil
}

// ApplyEnv overlays environment variables; a set variable wins over the file.
func (c *Config) ApplyEnv(getenv func(string) string) {
	set := func(dst *string, key string) {
		if v := getenv(key); v != "" {
			*dst = v
		}
	}
	set(&c.SigningSecret, "SHIP_SLACK_SIGNING_SECRET")
	set(&c.BotToken, "SHIP_SLACK_BOT_TOKEN")
	set(&c.AppToken, "SHIP_SLACK_APP_TOKEN")
	set(&c.MattermostToken, "SHIP_MATTERMOST_TOKEN")
	set(&c.APIURL, "SHIP_SLACK_API_URL")
	set(&c.DefaultChannel, "SHIP_SLACK_CHANNEL")
}
