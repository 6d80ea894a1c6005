package command

import (
	"errors"
	"github.com/shipteam/ship/internal/release"
	"reflect"
	"strings"
	"testing"
)

func TestParseEveryVerb(t *testing.T) {
	text := OutputText
	tests := []struct {
		line string
		want Command
	}{
		{"deploy resizer v2", Command{Verb: VerbDeploy, App: "resizer", Version: "v2", Output: text}},
		{"deploy resizer v2 --canary 1%", Command{Verb: VerbDeploy, App: "resizer", Version: "v2", Canary: 100, Output: text}},
		{"deploy resizer v2 --canary=0.1%", Command{Verb: VerbDeploy, App: "resizer", Version: "v2", Canary: 10, Output: text}},
		{"deploy --canary 12.5 resizer v2", Command{Verb: VerbDeploy, App: "resizer", Version: "v2", Canary: 1250, Output: text}},
		{"deploy resizer 1.4.0-rc.1 --steps 1,10,50,100 -e staging --wait -o json",
			Command{Verb: VerbDeploy, App: "resizer", Version: "1.4.0-rc.1", Steps: []release.Weight{100, 1000, 5000, 10000}, Env: "staging", Wait: true, Output: OutputJSON}},
		{"deploy resizer v2 --steps 5%,50% --env=staging", Command{Verb: VerbDeploy, App: "resizer", Version: "v2", Steps: []release.Weight{500, 5000}, Env: "staging", Output: text}},
		{"deploy resizer v2 --rolling", Command{Verb: VerbDeploy, App: "resizer", Version: "v2", Rolling: true, Output: text}},
		{"Deploy Resizer V2", Command{Verb: VerbDeploy, App: "resizer", Version: "V2", Output: text}},
		{"promote resizer --wait", Command{Verb: VerbPromote, App: "resizer", Wait: true, Output: text}},
		{"abort resizer", Command{Verb: VerbAbort, App: "resizer", Output: text}},
		{`abort resizer --reason "p99 doubled"`, Command{Verb: VerbAbort, App: "resizer", Reason: "p99 doubled", Output: text}},
		{"rollback resizer", Command{Verb: VerbRollback, App: "resizer", Output: text}},
		{"rb resizer --to v1 --wait", Command{Verb: VerbRollback, App: "resizer", To: "v1", Wait: true, Output: text}},
		{"scale resizer 10", Command{Verb: VerbScale, App: "resizer", Replicas: 10, Output: text}},
		{"scale resizer 0 -e staging", Command{Verb: VerbScale, App: "resizer", Replicas: 0, Env: "staging", Output: text}},
		{"reclaim resizer", Command{Verb: VerbReclaim, App: "resizer", Output: text}},
		{"reclaim resizer -e staging -o json", Command{Verb: VerbReclaim, App: "resizer", Env: "staging", Output: OutputJSON}},
		{"status", Command{Verb: VerbStatus, Output: text}},
		{"status resizer --output json", Command{Verb: VerbStatus, App: "resizer", Output: OutputJSON}},
		{"history resizer -n 5", Command{Verb: VerbHistory, App: "resizer", Lines: 5, Output: text}},
		{`lock resizer --reason "db migration"`, Command{Verb: VerbLock, App: "resizer", Reason: "db migration", Output: text}},
		{`lock resizer --reason 'it''s "fine"'`, Command{Verb: VerbLock, App: "resizer", Reason: `its "fine"`, Output: text}},
		{"lock resizer -r freeze", Command{Verb: VerbLock, App: "resizer", Reason: "freeze", Output: text}},
		{"unlock resizer", Command{Verb: VerbUnlock, App: "resizer", Output: text}},
		{"logs resizer", Command{Verb: VerbLogs, App: "resizer", Output: text}},
		{"logs resizer --version v2 -n 200 -f", Command{Verb: VerbLogs, App: "resizer", LogVersion: "v2", Lines: 200, Follow: true, Output: text}},
		{"logs resizer --follow=false", Command{Verb: VerbLogs, App: "resizer", Output: text}},
		{"apps", Command{Verb: VerbApps, Output: text}},
		{"ls -o json", Command{Verb: VerbApps, Output: OutputJSON}},
		{"", Command{Verb: VerbHelp, Output: text}},
		{"help", Command{Verb: VerbHelp, Output: text}},
		{"help deploy", Command{Verb: VerbHelp, HelpTopic: "deploy", Output: text}},
		{"help rb", Command{Verb: VerbHelp, HelpTopic: "rollback", Output: text}},
		{"deploy --help", Command{Verb: VerbHelp, HelpTopic: "deploy", Output: text}},
		{"scale -h resizer", Command{Verb: VerbHelp, HelpTopic: "scale", Output: text}},
		{"--help", Command{Verb: VerbHelp, Output: text}},
		{"-- deploy resizer v2", Command{Verb: VerbDeploy, App: "resizer", Version: "v2", Output: text}},
		// Phones and Macs turn "--" into a dash and straight quotes into curly ones.
		{"deploy resizer v2 —canary 1%", Command{Verb: VerbDeploy, App: "resizer", Version: "v2", Canary: 100, Output: text}},
		{"lock resizer –reason “db migration”", Command{Verb: VerbLock, App: "resizer", Reason: "db migration", Output: text}},
		{"lock resizer --reason ‘don’t ship’", Command{Verb: VerbLock, App: "resizer", Reason: "don’t ship", Output: text}},
		{`lock resizer --reason db\ migration`, Command{Verb: VerbLock, App: "resizer", Reason: "db migration", Output: text}},
		{"  deploy\tresizer\n v2  ", Command{Verb: VerbDeploy, App: "resizer", Version: "v2", Output: text}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := ParseText(tt.line)
			if err != nil {
				t.Fatalf("ParseText(%q): %v", tt.line, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseText(%q)\n got  %+v\n want %+v", tt.line, got, tt.want)
			}
			back, err := ParseText(got.String())
			if err != nil || !reflect.DeepEqual(back, got) {
				t.Fatalf("round trip via %q: %+v, %v", got.String(), back, err)
			}
		})
	}
}

func TestParseRefusesWithAHelpfulUsageError(t *testing.T) {
	tests := []struct {
		line string
		verb Verb
		msg  string
	}{
		{"deploy", VerbDeploy, "missing APP"},
		{"deploy resizer", VerbDeploy, "missing VERSION"},
		{"deploy resizer v2 v3", VerbDeploy, `unexpected argument "v3" after VERSION`},
		{"deploy resizer v2 --canary", VerbDeploy, "--canary needs a value (PCT)"},
		{"deploy resizer v2 --canary 0", VerbDeploy, `--canary must be a percentage above 0 and below 100 such as 1%, 0.5 or 10%, got "0"`},
		{"deploy resizer v2 --canary 100%", VerbDeploy, `--canary must be a percentage above 0 and below 100 such as 1%, 0.5 or 10%, got "100%"`},
		{"deploy resizer v2 --canary 150", VerbDeploy, `--canary must be a percentage above 0 and below 100 such as 1%, 0.5 or 10%, got "150"`},
		{"deploy resizer v2 --canary -1", VerbDeploy, `--canary must be a percentage above 0 and below 100 such as 1%, 0.5 or 10%, got "-1"`},
		{"deploy resizer v2 --canary one", VerbDeploy, `--canary must be a percentage above 0 and below 100 such as 1%, 0.5 or 10%, got "one"`},
		{"deploy resizer v2 --canary 0.125", VerbDeploy, `--canary must be a percentage above 0 and below 100 such as 1%, 0.5 or 10%, got "0.125"`},
		{"deploy resizer v2 --canary NaN", VerbDeploy, `--canary must be a percentage above 0 and below 100 such as 1%, 0.5 or 10%, got "NaN"`},
		{"deploy resizer v2 --steps 10,5", VerbDeploy, "--steps must go up: 5 comes after 10"},
		{"deploy resizer v2 --steps 1,,10", VerbDeploy, `--steps weights must be percentages above 0 and at most 100 such as 1,10,50,100, got ""`},
		{"deploy resizer v2 --steps 1,101", VerbDeploy, `--steps weights must be percentages above 0 and at most 100 such as 1,10,50,100, got "101"`},
		{"deploy resizer v2 --canary 1 --steps 1,10", VerbDeploy, "use either --canary (hold at one weight) or --steps (walk weights), not both"},
		{"deploy resizer v2 --rolling --canary 1", VerbDeploy, "--rolling has no canary; drop --canary and --steps"},
		{"deploy resizer v2 --canary 1 --canary 2", VerbDeploy, "--canary is given twice"},
		{"deploy resizer v2 --canry 1", VerbDeploy, "unknown flag --canry; did you mean --canary?"},
		{"deploy resizer v2 --to v1", VerbDeploy, "deploy does not take --to"},
		{"deploy resizer 'v2; rm -rf /'", VerbDeploy, `invalid version "v2; rm -rf /"`},
		{"deploy re_sizer v2", VerbDeploy, `invalid app name "re_sizer": use lowercase letters, digits and '-'`},
		{"deploy resizer v2 --env Prod_1", VerbDeploy, `invalid environment name "Prod_1"`},
		{"deploy resizer v2 --output yaml", VerbDeploy, `--output must be text or json, got "yaml"`},
		{"deploy resizer v2 --wait=maybe", VerbDeploy, `a flag without a value takes =true or =false, got "maybe"`},
		{"scale resizer", VerbScale, "missing N"},
		{"scale resizer -1", VerbScale, `N must be a whole number from 0 to 1000, got "-1"`},
		{"scale resizer 1001", VerbScale, `N must be a whole number from 0 to 1000, got "1001"`},
		{"scale resizer ten", VerbScale, `N must be a whole number from 0 to 1000, got "ten"`},
		{"scale resizer 99999999999999999999", VerbScale, `N must be a whole number from 0 to 1000`},
		{"reclaim", VerbReclaim, "missing APP"},
		{"reclaim resizer v2", VerbReclaim, `unexpected argument "v2" after APP`},
		{"reclaim resizer --wait", VerbReclaim, "reclaim does not take --wait"},
		{"lock resizer", VerbLock, `lock needs --reason, e.g. --reason "db migration"`},
		{`lock resizer --reason ""`, VerbLock, `--reason needs some text`},
		{"lock resizer --reason \"a\nb\"", VerbLock, "--reason must be one line of plain text"},
		{"lock resizer --reason " + strings.Repeat("x", 501), VerbLock, "--reason is longer than 500 characters"},
		{"status a b", VerbStatus, `unexpected argument "b" after APP`},
		{"apps resizer", VerbApps, `apps takes no arguments, got "resizer"`},
		{"logs resizer -n 0", VerbLogs, `--lines must be a whole number from 1 to 10000, got "0"`},
		{"help nope", VerbHelp, `no command "nope"`},
		{"depoly resizer v2", "", `unknown command "depoly"; did you mean deploy?`},
		{"frobnicate", "", `unknown command "frobnicate"`},
		{"--env prod", "", "missing command before --env"},
		{`lock resizer --reason "db migration`, "", `unterminated " quote`},
		{`lock resizer --reason 'db migration`, "", `unterminated ' quote`},
		{`lock resizer --reason “db migration`, "", `unterminated “ quote`},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			c, err := ParseText(tt.line)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("not a *UsageError: %T %v", err, err)
			}
			if ue.Verb != tt.verb {
				t.Errorf("verb %q, want %q", ue.Verb, tt.verb)
			}
			if !strings.HasPrefix(ue.Msg, tt.msg) {
				t.Errorf("message %q, want prefix %q", ue.Msg, tt.msg)
			}
			// The error shows how to do it right.
			if tt.verb != "" && !strings.Contains(err.Error(), "usage: "+string(tt.verb)) {
				t.Errorf("error lacks usage:\n%s", err)
			}
			if tt.verb == "" && !strings.Contains(err.Error(), "commands:") {
				t.Errorf("error lacks the command list:\n%s", err)
			}
		})
	}
}

func TestParseSlash(t *testing.T) {
	tests := []struct {
		cmd, text string
		want      string // canonical form
	}{
		{"/deploy", "resizer v2 --canary 1%", "deploy resizer v2 --canary 1%"},
		{"/ship", "deploy resizer v2 --canary 1%", "deploy resizer v2 --canary 1%"},
		{"/ship", "status resizer", "status resizer"},
		{"/ship", "rollback resizer", "rollback resizer"},
		{"/ship", "scale resizer 10", "scale resizer 10"},
		{"/ship", "history resizer", "history resizer"},
		{"/ship", "reclaim resizer --env staging", "reclaim resizer --env staging"},
		{"/reclaim", "resizer", "reclaim resizer"},
		{"/ship", `lock resizer --reason "release freeze"`, `lock resizer --reason "release freeze"`},
		{"/ship", "help", "help"},
		{"/ship", "", "help"},
		{"/deploy", "help", "help deploy"},
		{"/rollback", "resizer --to v1", "rollback resizer --to v1"},
		{"/SHIP", "STATUS", "status"},
		{"/help", "deploy", "help deploy"},
		{"/status", "", "status"},
		{"/ship", "lock resizer --reason 'a &amp; b &lt;now&gt;'", `lock resizer --reason "a & b <now>"`},
		{"/ship", "lock resizer --reason “a &amp; b”", `lock resizer --reason "a & b"`},
	}
	for _, tt := range tests {
		c, err := ParseSlash(tt.cmd, tt.text)
		if err != nil {
			t.Errorf("ParseSlash(%q, %q): %v", tt.cmd, tt.text, err)
			continue
		}
		if got := c.String(); got != tt.want {
			t.Errorf("ParseSlash(%q, %q) = %q, want %q", tt.cmd, tt.text, got, tt.want)
		}
	}
	_, err := ParseSlash("/deploy", "resizer")
	var ue *UsageError
	if !errors.As(err, &ue) || ue.Verb != VerbDeploy || ue.Msg != "missing VERSION" {
		t.Fatalf("/deploy resizer: %v", err)
	}
	_, err = ParseSlash("/deploy", `resizer "v2`)
	if !errors.As(err, &ue) || ue.Verb != VerbDeploy {
		t.Fatalf("/deploy with open quote: %v", err)
	}
}

func TestParseTakesCLIArgsWithSpacesInValues(t *testing.T) {
	c, err := Parse([]string{"lock", "resizer", "--reason", `db "big" migration \ now`})
	if err != nil {
		t.Fatal(err)
	}
	if c.Reason != `db "big" migration \ now` {
		t.Fatalf("reason %q", c.Reason)
	}
	back, err := ParseText(c.String())
	if err != nil || !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip via %s: %+v %v", c.String(), back, err)
	}
}

func TestUsageAndHelpMentionEveryVerbAndFlag(t *testing.T) {
	h := Help()
	for _, v := range Verbs() {
		if !strings.Contains(h, "\n  "+string(v)) {
			t.Errorf("Help lacks %s", v)
		}
		u := Usage(v)
		if !strings.HasPrefix(u, string(v)) {
			t.Errorf("Usage(%s) = %q", v, u)
		}
		for _, f := range verbs[v].flags {
			if !strings.Contains(u, "--"+f) {
				t.Errorf("Usage(%s) lacks --%s", v, f)
			}
		}
	}
	if !strings.HasPrefix(Usage(VerbLock), "lock APP [--env ENV] --reason TEXT") {
		t.Errorf("lock usage: %s", Usage(VerbLock))
	}
	if !strings.HasPrefix(Usage(VerbReclaim), "reclaim APP [--env ENV]\n") {
		t.Errorf("reclaim usage: %s", Usage(VerbReclaim))
	}
	if !strings.HasPrefix(Usage(VerbDeploy), "deploy APP VERSION [--env ENV] [--canary PCT] [--steps W,W,...] [--rolling] [--wait]") {
		t.Errorf("deploy usage: %s", Usage(VerbDeploy))
	}
}

func TestReadOnlyVerbs(t *testing.T) {
	for v, want := range map[Verb]bool{VerbStatus: true, VerbLogs: true, VerbApps: true, VerbHistory: true, VerbHelp: true,
		VerbDeploy: false, VerbPromote: false, VerbAbort: false, VerbRollback: false, VerbScale: false, VerbReclaim: false, VerbLock: false, VerbUnlock: false} {
		if v.ReadOnly() != want {
			t.Errorf("%s.ReadOnly() = %v", v, !want)
		}
	}
}
