package slack

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	slackapi "github.com/slack-go/slack"
	"gopkg.in/yaml.v3"
)

// The app manifests in deploy/slack decode strictly into slack-go's
// Manifest type and ask for what the bot uses, in the way each mode needs.
func TestSlackAppManifests(t *testing.T) {
	for _, tt := range []struct {
		file   string
		socket bool
	}{{"manifest-http.yaml", false}, {"manifest-socket.yaml", true}} {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "slack", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var m slackapi.Manifest
			dec := yaml.NewDecoder(bytes.NewReader(b))
			dec.KnownFields(true)
			if err := dec.Decode(&m); err != nil {
				t.Fatalf("manifest does not decode: %v", err)
			}
			var cmds []string
			for _, c := range m.Features.SlashCommands {
				cmds = append(cmds, c.Command)
				if tt.socket != (c.Url == "") || (!tt.socket && !strings.HasSuffix(c.Url, "/slack/commands")) {
					t.Errorf("%s: url %q", c.Command, c.Url)
				}
			}
			if !slices.Equal(cmds, []string{"/deploy", "/ship"}) {
				t.Errorf("commands = %v", cmds)
			}
			for _, scope := range []string{"commands", "chat:write", "chat:write.public", "usergroups:read"} {
				if !slices.Contains(m.OAuthConfig.Scopes.Bot, scope) {
					t.Errorf("missing bot scope %s", scope)
				}
			}
			if m.Settings.SocketModeEnabled != tt.socket || !m.Settings.Interactivity.IsEnabled {
				t.Errorf("settings = %+v", m.Settings)
			}
			if !tt.socket && !strings.HasSuffix(m.Settings.Interactivity.RequestUrl, "/slack/interactions") {
				t.Errorf("interactivity url %q", m.Settings.Interactivity.RequestUrl)
			}
		})
	}
}
