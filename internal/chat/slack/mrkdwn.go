package slack

import (
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// markup is text in Slack's mrkdwn that is safe to send as it is: ship's own
// words and formatting (*bold*, `code`, :emoji:, <#C…> channel links,
// <!subteam^S…> mentions) with everything else escaped. Versions, reasons,
// names, actors, engine messages and errors are plain text: they become
// markup only through esc or mrkdwnf, so `<!channel>` in a version or
// `<https://evil|click>` in a lock reason shows as typed instead of pinging
// a channel or disguising a link. Slack parses <…> inside code spans and
// blocks too, so those are escaped the same way.
//
// Functions that take markup (ephemeral, mrkdwn, reply) accept a constant
// string as is; a string variable needs esc, or a conversion that says
// "ship wrote this".
type markup string

var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// esc turns plain text into markup that shows it verbatim: Slack's three
// control characters become entities (its only escaping rule).
func esc(s string) markup { return markup(mrkdwnEscaper.Replace(s)) }

// mrkdwnf is fmt.Sprintf for mrkdwn: format is ship's own markup; markup
// arguments go in as they are; every other string-like argument (string,
// named string types, error, fmt.Stringer) is escaped first; numbers and
// the rest format as usual.
func mrkdwnf(format string, args ...any) markup {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case markup:
			out[i] = string(v)
		case error:
			out[i] = string(esc(v.Error()))
		case fmt.Stringer:
			out[i] = string(esc(v.String()))
		default:
			if rv := reflect.ValueOf(a); rv.Kind() == reflect.String {
				out[i] = string(esc(rv.String()))
			} else {
				out[i] = a
			}
		}
	}
	return markup(fmt.Sprintf(format, out...))
}

// joinMarkup joins markup with a separator of ship's own.
func joinMarkup(parts []markup, sep string) markup {
	s := make([]string, len(parts))
	for i, p := range parts {
		s[i] = string(p)
	}
	return markup(strings.Join(s, sep))
}

// channelLink is a link to a Slack channel by ID.
func channelLink(id string) markup { return "<#" + esc(id) + ">" }

// clipMarkup shortens m to at most n bytes plus "…", never cutting a rune,
// an entity (&lt;) or a <…> link or mention in half.
func clipMarkup(m markup, n int) markup {
	s := string(m)
	if len(s) <= n {
		return m
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	// An entity is at most 5 bytes; a link or mention may be longer, but
	// ship writes only short ones (channel and group IDs).
	if i := strings.LastIndexAny(s[:cut], "&<"); i >= 0 {
		closer := ";"
		if s[i] == '<' {
			closer = ">"
		}
		if !strings.Contains(s[i:cut], closer) {
			cut = i
		}
	}
	return markup(s[:cut]) + "…"
}

// mrkdwnBuilder accumulates markup, each piece written with mrkdwnf.
type mrkdwnBuilder struct{ b strings.Builder }

func (m *mrkdwnBuilder) printf(format string, args ...any) {
	m.b.WriteString(string(mrkdwnf(format, args...)))
}

func (m *mrkdwnBuilder) markup() markup { return markup(m.b.String()) }

// authorizerText vouches for the authorizer's sentences (perms.go): they
// carry ship's own <!subteam^…> and <#…> markup, and the only names in them
// are app and environment names, which the grammar (slash commands) and
// pressFrom (buttons) hold to the name rule before they get there.
func authorizerText(s string) markup { return markup(s) }
