package slack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoadsWithEnvOverlay(t *testing.T) {
	t.Setenv("SHIP_SLACK_SIGNING_SECRET", "from-env")
	t.Setenv("SHIP_SLACK_BOT_TOKEN", "xoxb-from-env")
	t.Setenv("SHIP_SLACK_APP_TOKEN", "")
	c, err := LoadConfig(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("example config invalid: %v", err)
	}
	if c.SigningSecret != "from-env" || c.BotToken != "xoxb-from-env" || c.SocketMode() {
		t.Fatalf("env overlay: %+v", c)
	}
	if c.Apps["resizer"].Channel != "C0RESIZER" || len(c.Grants) != 0 || c.GroupCacheTTL != 5*time.Minute {
		t.Fatalf("decoded: %+v", c)
	}
	// The old form (permissions inside the Slack config) still decodes and
	// validates; ship serve folds it into the auth policy (server tests).
	old, err := LoadConfig(filepath.Join("testdata", "old-permissions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Validate(); err != nil {
		t.Fatal(err)
	}
	if verbs := old.Roles["releaser"]; strings.Join(verbs, ",") != "deploy,promote,abort" || len(old.Grants) != 4 {
		t.Fatalf("old form = %+v", old)
	}
	// The env wins over the file.
	dir := t.TempDir()
	p := filepath.Join(dir, "slack.yaml")
	if err := os.WriteFile(p, []byte("signing_secret: from-file\nbot_token: xoxb-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = LoadConfig(p)
	if err != nil || c.SigningSecret != "from-env" || c.BotToken != "xoxb-from-env" {
		t.Fatalf("LoadConfig = %+v, %v", c, err)
	}
}

func TestConfigErrorsAreReportedTogether(t *testing.T) {
	if _, err := ParseConfig([]byte("signing_secret: x\nchanel: C1\n")); err == nil || !strings.Contains(err.Error(), "chanel") {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := ParseConfig([]byte("group_cache_ttl: soon\n")); err == nil {
		t.Fatal("malformed duration accepted")
	}
	c := Config{
		BotToken: "xoxp-user-token", AppToken: "xoxa-wrong", APIURL: "ftp://x",
		AckBudget: 3 * time.Second,
		Grants: []Grant{
			{Role: "deployer", Users: []string{"U1"}, Groups: []string{"S1"}},
		},
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{
		"bot_token must be a bot token", "app_token must be an app-level token", "api_url",
		"ack_budget",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
	if err := (Config{SigningSecret: "s", Grants: []Grant{{Groups: []string{"S1"}}}}).Validate(); err == nil || !strings.Contains(err.Error(), "grants[0]: groups need bot_token") {
		t.Fatalf("old-form group grant without a bot token: %v", err)
	}
	if err := (Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "signing_secret") {
		t.Fatalf("empty config: %v", err)
	}
	if _, err := New(Config{SigningSecret: "s"}, nil, nil); err == nil {
		t.Fatal("nil engine accepted")
	}
}
