// Package command is the one grammar every front end shares: the CLI's
// arguments, Slack's and Mattermost's slash-command text and the dashboard's
// command box all become a Command here, and every usage and help text
// comes from here, so a command typed anywhere means the same thing.
//
// It only parses and checks shape (names, numbers, weights, which flags go
// with which verb). It must not know apps, versions or permissions: whether
// "resizer" exists is the engine's question.
//
// The CLI's connection flags --server and --token are not part of this
// grammar: the CLI strips them (and reads SHIP_SERVER, SHIP_TOKEN) before
// calling Parse. Usage texts have no program prefix; a front end prints
// "ship " or "/ship " before them.
package command

import (
	"fmt"
	"github.com/shipteam/ship/internal/release"
	"regexp"
	"strings"
)

// Verb is what a command does.
type Verb string

const (
	VerbDeploy   Verb = "deploy"
	VerbPromote  Verb = "promote"
	VerbAbort    Verb = "abort"
	VerbRollback Verb = "rollback"
	VerbScale    Verb = "scale"
	VerbReclaim  Verb = "reclaim"
	VerbStatus   Verb = "status"
	VerbHistory  Verb = "history"
	VerbLock     Verb = "lock"
	VerbUnlock   Verb = "unlock"
	VerbLogs     Verb = "logs"
	VerbApps     Verb = "apps"
	VerbHelp     Verb = "help"
)

// Output formats.
const (
	OutputText = "text"
	OutputJSON = "json"
)

// Limits that keep a typo from being obeyed.
const (
	MaxReplicas  = 1000
	MaxLines     = 10000
	MaxReasonLen = release.MaxReasonLen
	MaxTextLen   = 4000 // Slack's slash-command text is at most about this
	maxSteps     = 100
)

// Command is one parsed command. Fields a verb does not take are zero.
type Command struct {
	Verb    Verb
	App     string
	Env     string           // --env / -e; "" = the app's default environment
	Version string           // deploy's VERSION
	Canary  release.Weight   // --canary PCT: go to this weight and hold until promoted or aborted; 0 = none
	Steps   []release.Weight // --steps 1,10,50,100: walk these weights instead of the spec's; nil = the spec's
	Rolling bool             // --rolling: no canary, replace stable directly
	Wait    bool             // --wait: follow progress until the release ends
	To      string           // rollback --to VERSION; "" = the previous successful release
	// Replicas is scale's N.
	Replicas   int
	Reason     string // lock --reason (required), abort/rollback --reason (optional)
	LogVersion string // logs --version V
	Lines      int    // logs/history -n, --lines; 0 = the server's default
	Follow     bool   // logs -f, --follow
	Output     string // --output / -o: text (default) or json
	HelpTopic  string // help VERB (a canonical verb name); "" = every verb
}

// ReadOnly reports whether the verb only reads (status, history, logs,
// apps, help); front ends may apply lighter permission checks to those.
func (v Verb) ReadOnly() bool {
	switch v {
	case VerbStatus, VerbHistory, VerbLogs, VerbApps, VerbHelp:
		return true
	}
	return false
}

// Verbs lists every verb in the order help shows them.
func Verbs() []Verb {
	return []Verb{VerbDeploy, VerbPromote, VerbAbort, VerbRollback, VerbScale, VerbReclaim, VerbStatus, VerbHistory, VerbLock, VerbUnlock, VerbLogs, VerbApps, VerbHelp}
}

var aliases = map[string]Verb{"ls": VerbApps, "list": VerbApps, "rb": VerbRollback, "log": VerbLogs, "st": VerbStatus}

// LookupVerb finds a verb by name or alias, ignoring case.
func LookupVerb(s string) (Verb, bool) {
	s = strings.ToLower(s)
	for _, v := range Verbs() {
		if string(v) == s {
			return v, true
		}
	}
	v, ok := aliases[s]
	return v, ok
}

// UsageError is a command that does not fit the grammar. Its message is
// meant for the person who typed the command.
type UsageError struct {
	Verb Verb // "" when the verb itself is unknown or missing
	Msg  string
}

// Error is the message followed by the verb's usage (or the list of verbs).
func (e *UsageError) Error() string {
	if e.Verb == "" {
		return e.Msg + "\n\n" + Help()
	}
	return e.Msg + "\n\nusage: " + Usage(e.Verb)
}

func usageErr(v Verb, format string, args ...any) *UsageError {
	return &UsageError{Verb: v, Msg: fmt.Sprintf(format, args...)}
}

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	countRE = regexp.MustCompile(`^[0-9]{1,9}$`)
)

func checkName(v Verb, what, s string) (string, error) {
	l := strings.ToLower(s)
	if len(l) > 63 || !nameRE.MatchString(l) {
		return "", usageErr(v, "invalid %s name %q: use lowercase letters, digits and '-'", what, s)
	}
	return l, nil
}

func checkVersion(v Verb, s string) (string, error) {
	if err := release.CheckVersion(s); err != nil {
		return "", usageErr(v, "%v", err)
	}
	return s, nil
}

func checkReason(v Verb, s string) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", usageErr(v, "--reason needs some text, e.g. --reason \"db migration\"")
	}
	s, err := release.CheckReason(s)
	if err != nil {
		return "", usageErr(v, "--%v", err)
	}
	return s, nil
}
