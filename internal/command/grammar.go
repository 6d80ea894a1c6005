package command

import (
	"fmt"
	"github.com/shipteam/ship/internal/release"
	"strconv"
	"strings"
)

// flagDef is one flag of the grammar. value names the argument in usage
// ("" for a boolean flag); set checks and stores it.
type flagDef struct {
	long, short string
	value       string
	help        string
	set         func(c *Command, v Verb, s string) error
}

// verbDef is one verb: its positional arguments, the flags it takes and
// its help. opt counts trailing positionals that may be left out.
type verbDef struct {
	args    []string
	opt     int
	flags   []string
	summary string
	detail  string
}

var flags = map[string]*flagDef{
	"env": {long: "env", short: "e", value: "ENV", help: "environment (default: the app's first)",
		set: func(c *Command, v Verb, s string) (err error) { c.Env, err = checkName(v, "environment", s); return }},
	"canary": {long: "canary", value: "PCT", help: "send PCT% (1%, 0.5, 12.5%) to the new version and hold there until promote or abort",
		set: func(c *Command, v Verb, s string) error {
			w, err := release.ParseWeight(s)
			if err != nil || w <= 0 || w >= release.Full {
				return usageErr(v, "--canary must be a percentage above 0 and below 100 such as 1%%, 0.5 or 10%%, got %q", s)
			}
			c.Canary = w
			return nil
		}},
	"steps": {long: "steps", value: "W,W,...", help: "walk these weights (e.g. 1,10,50,100) with the spec's pauses",
		set: func(c *Command, v Verb, s string) error {
			parts := strings.Split(s, ",")
			if len(parts) > maxSteps {
				return usageErr(v, "--steps takes at most %d weights", maxSteps)
			}
			var ws []release.Weight
			for _, p := range parts {
				w, err := release.ParseWeight(strings.TrimSpace(p))
				if err != nil || w <= 0 || w > release.Full {
					return usageErr(v, "--steps weights must be percentages above 0 and at most 100 such as 1,10,50,100, got %q", strings.TrimSpace(p))
				}
				if len(ws) > 0 && w <= ws[len(ws)-1] {
					return usageErr(v, "--steps must go up: %s comes after %s", w.Number(), ws[len(ws)-1].Number())
				}
				ws = append(ws, w)
			}
			c.Steps = ws
			return nil
		}},
	"rolling": {long: "rolling", help: "no canary: replace the stable instances directly",
		set: boolFlag(func(c *Command, b bool) { c.Rolling = b })},
	"wait": {long: "wait", short: "w", help: "follow progress until the release ends; exit non-zero if it fails",
		set: boolFlag(func(c *Command, b bool) { c.Wait = b })},
	"to": {long: "to", value: "VERSION", help: "roll back to this version (default: the previous successful release)",
		set: func(c *Command, v Verb, s string) (err error) { c.To, err = checkVersion(v, s); return }},
	"reason": {long: "reason", short: "r", value: "TEXT", help: "why, recorded in history and shown to the team",
		set: func(c *Command, v Verb, s string) (err error) { c.Reason, err = checkReason(v, s); return }},
	"version": {long: "version", value: "V", help: "only this version's instances",
		set: func(c *Command, v Verb, s string) (err error) { c.LogVersion, err = checkVersion(v, s); return }},
	"lines": {long: "lines", short: "n", value: "N", help: "how many lines (entries) to show",
		set: func(c *Command, v Verb, s string) error {
			n, err := strconv.Atoi(s)
			if !countRE.MatchString(s) || err != nil || n < 1 || n > MaxLines {
				return usageErr(v, "--lines must be a whole number from 1 to %d, got %q", MaxLines, s)
			}
			c.Lines = n
			return nil
		}},
	"follow": {long: "follow", short: "f", help: "keep printing new lines",
		set: boolFlag(func(c *Command, b bool) { c.Follow = b })},
	"output": {long: "output", short: "o", value: "FORMAT", help: "text (default) or json",
		set: func(c *Command, v Verb, s string) error {
			switch f := strings.ToLower(s); f {
			case OutputText, OutputJSON:
				c.Output = f
				return nil
			}
			return usageErr(v, "--output must be text or json, got %q", s)
		}},
	"help": {long: "help", short: "h", help: "show this help"},
}

// flagOrder is the order of flags in usage texts and in Command.String.
var flagOrder = []string{"env", "canary", "steps", "rolling", "to", "reason", "version", "lines", "follow", "wait", "output", "help"}

func boolFlag(store func(*Command, bool)) func(*Command, Verb, string) error {
	return func(c *Command, v Verb, s string) error {
		if s == "" {
			store(c, true)
			return nil
		}
		b, err := strconv.ParseBool(s)
		if err != nil {
			return usageErr(v, "a flag without a value takes =true or =false, got %q", s)
		}
		store(c, b)
		return nil
	}
}

var verbs = map[Verb]verbDef{
	VerbDeploy: {args: []string{"APP", "VERSION"}, flags: []string{"env", "canary", "steps", "rolling", "wait", "output"},
		summary: "roll VERSION of APP out (the spec's canary steps by default)",
		detail:  "--canary, --steps and --rolling exclude each other."},
	VerbPromote: {args: []string{"APP"}, flags: []string{"env", "wait", "output"},
		summary: "send all traffic to the canary and make it stable"},
	VerbAbort: {args: []string{"APP"}, flags: []string{"env", "reason", "output"},
		summary: "stop the release now: canary weight to 0, stable keeps serving"},
	VerbRollback: {args: []string{"APP"}, flags: []string{"env", "to", "reason", "wait", "output"},
		summary: "go back to the previous successful release, skipping canary steps"},
	VerbScale: {args: []string{"APP", "N"}, flags: []string{"env", "output"},
		summary: fmt.Sprintf("run N (0 to %d) stable instances; the canary keeps its share", MaxReplicas)},
	VerbReclaim: {args: []string{"APP"}, flags: []string{"env", "output"},
		summary: "take back the fields ship manages after a hand edit (kubectl scale, set image)",
		detail:  "Forces ship's recorded state onto stable and the canary; the event names who lost which field."},
	VerbStatus: {args: []string{"APP"}, opt: 1, flags: []string{"env", "output"},
		summary: "show versions, weights, instances and the release in progress"},
	VerbHistory: {args: []string{"APP"}, flags: []string{"env", "lines", "output"},
		summary: "list APP's releases and events: who, what, when, why"},
	VerbLock: {args: []string{"APP"}, flags: []string{"env", "reason", "output"},
		summary: "refuse deploys of APP until unlocked (--reason is required)"},
	VerbUnlock: {args: []string{"APP"}, flags: []string{"env", "output"},
		summary: "allow deploys of APP again"},
	VerbLogs: {args: []string{"APP"}, flags: []string{"env", "version", "lines", "follow", "output"},
		summary: "show recent output of APP's instances"},
	VerbApps: {flags: []string{"output"},
		summary: "list the apps ship knows"},
	VerbHelp: {args: []string{"COMMAND"}, opt: 1,
		summary: "show every command, or one command's flags"},
}

// Usage is one verb's usage line followed by its flags, without a program
// name in front.
func Usage(v Verb) string {
	d, ok := verbs[v]
	if !ok {
		return Help()
	}
	var b strings.Builder
	b.WriteString(usageLine(v, d))
	b.WriteString("\n  " + d.summary)
	if d.detail != "" {
		b.WriteString("\n  " + d.detail)
	}
	for _, name := range flagOrder {
		if !contains(d.flags, name) {
			continue
		}
		f := flags[name]
		left := "--" + f.long
		if f.short != "" {
			left = "-" + f.short + ", " + left
		}
		if f.value != "" {
			left += " " + f.value
		}
		fmt.Fprintf(&b, "\n    %-22s %s", left, f.help)
	}
	return b.String()
}

func usageLine(v Verb, d verbDef) string {
	parts := []string{string(v)}
	for i, a := range d.args {
		if i >= len(d.args)-d.opt {
			a = "[" + a + "]"
		}
		parts = append(parts, a)
	}
	for _, name := range flagOrder {
		if !contains(d.flags, name) || name == "output" {
			continue
		}
		f := flags[name]
		if f.value != "" {
			parts = append(parts, "[--"+f.long+" "+f.value+"]")
		} else {
			parts = append(parts, "[--"+f.long+"]")
		}
	}
	if v == VerbLock {
		for i, p := range parts {
			if p == "[--reason TEXT]" {
				parts[i] = "--reason TEXT"
			}
		}
	}
	return strings.Join(parts, " ")
}

// Help lists every verb with a one-line summary.
func Help() string {
	var b strings.Builder
	b.WriteString("commands:")
	for _, v := range Verbs() {
		d := verbs[v]
		left := string(v)
		for i, a := range d.args {
			if i >= len(d.args)-d.opt {
				a = "[" + a + "]"
			}
			left += " " + a
		}
		fmt.Fprintf(&b, "\n  %-22s %s", left, d.summary)
	}
	b.WriteString("\nadd --output json (-o json) for scripts; most commands take --env ENV (-e ENV).")
	b.WriteString("\nhelp COMMAND shows a command's flags.")
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
