package slack

import (
	"errors"
	"strings"
	"testing"

	"github.com/shipteam/ship/internal/release"
)

func TestMrkdwnfEscapesEveryPlainArgumentAndKeepsShipsMarkup(t *testing.T) {
	tests := []struct {
		name string
		got  markup
		want string
	}{
		{"plain string", mrkdwnf("*%s*", "<!channel> & co"), "*&lt;!channel&gt; &amp; co*"},
		{"named string type", mrkdwnf("%s", release.State("<!here>")), "&lt;!here&gt;"},
		{"error", mrkdwnf(":x: %v", errors.New(`bad "<@U1>"`)), `:x: bad "&lt;@U1&gt;"`},
		{"quoted", mrkdwnf("%q", "<x>"), `"&lt;x&gt;"`},
		{"markup passes", mrkdwnf("see %s", channelLink("CDEPLOYS")), "see <#CDEPLOYS>"},
		{"numbers", mrkdwnf("#%d at %s%%", 7, trimFloat(12.5)), "#7 at 12.5%"},
		{"esc of an entity", esc("&lt;"), "&amp;lt;"},
		{"channel link with a hostile id", channelLink("C1>|x"), "<#C1&gt;|x>"},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestClipMarkupNeverCutsAnEntityOrALink(t *testing.T) {
	for _, tt := range []struct {
		in   markup
		n    int
		want markup
	}{
		{"abc &lt;def", 6, "abc …"},
		{"abc &lt;def", 8, "abc &lt;…"},
		{"ab <#C123> cd", 6, "ab …"},
		{"ab <#C123> cd", 11, "ab <#C123> …"},
		{"éé", 3, "é…"},
		{"short", 10, "short"},
	} {
		if got := clipMarkup(tt.in, tt.n); got != tt.want {
			t.Errorf("clipMarkup(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// Button values are checked against the name rule: a forged press cannot
// carry markup into the refusal the authorizer writes.
func TestPressWithAHostileAppOrEnvIsRefused(t *testing.T) {
	for _, v := range []string{
		`{"app":"<!channel>","env":"production","release":1}`,
		`{"app":"resizer","env":"<https://evil|x>","release":1}`,
	} {
		if _, err := decodeInteraction(pressPayload(alice, testChannel, ActionPromote, v, "")); err == nil {
			t.Errorf("button value %s accepted", v)
		}
	}
	if _, err := decodeInteraction(pressPayload(alice, testChannel, ActionPromote, `{"app":"resizer","env":"production","release":1}`, "")); err != nil {
		t.Errorf("ship's own button refused: %v", err)
	}
}

// Ship's own markup still works next to escaped values: the channel link
// in a deploy reply and the user-group mention in a refusal.
func TestShipsOwnMarkupSurvivesEscaping(t *testing.T) {
	h := newHarness(t, nil, nil)
	_, m, _ := h.slash(mallory, testChannel, "/ship", "lock resizer --reason x")
	if !strings.Contains(m.Text, "<!subteam^SOPS>") {
		t.Errorf("refusal lost its group mention: %q", m.Text)
	}
	_, _, resp := h.slash(alice, testChannel, "/deploy", "resizer v2")
	calls := h.waitCalls("the deploy reply", func(cs []slackCall) bool { return len(responsesTo(cs, resp)) > 0 })
	if got := responsesTo(calls, resp)[0].Text(); !strings.Contains(got, "Follow it in <#"+testChannel+">.") {
		t.Errorf("deploy reply lost its channel link: %q", got)
	}
}

// Whatever a user types, its escaped form holds no Slack control character,
// reads back as typed, and a clipped message never ends inside an entity.
func FuzzEscapedTextCarriesNoMarkup(f *testing.F) {
	for _, s := range []string{"<!channel>", "<https://evil|click>", "a & b", "&lt;", "é<é>&", ""} {
		f.Add(s, 5)
	}
	unescape := strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")
	f.Fuzz(func(t *testing.T, s string, n int) {
		m := esc(s)
		if strings.ContainsAny(string(m), "<>") {
			t.Fatalf("esc(%q) = %q keeps < or >", s, m)
		}
		if back := unescape.Replace(string(m)); back != s {
			t.Fatalf("esc(%q) reads back as %q", s, back)
		}
		if n < 0 || n > 1<<16 {
			return
		}
		c := string(clipMarkup(m, n))
		body := strings.TrimSuffix(c, "…")
		if i := strings.LastIndexByte(body, '&'); i >= 0 && !strings.Contains(body[i:], ";") {
			t.Fatalf("clipMarkup(%q, %d) = %q ends inside an entity", m, n, c)
		}
	})
}
