package command

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/shipteam/ship/internal/suggest"
)

// occurrence is one flag as written.
type occurrence struct {
	def   *flagDef
	name  string // as written, for messages
	value string
}

var negativeNumberRE = regexp.MustCompile(`^-[0-9]`)

// Parse reads the arguments after the program name, e.g.
// ["deploy", "resizer", "v2", "--canary", "1%"]. Flags may come before or
// after positionals, as --flag=value or --flag value; "--" ends flags.
// No arguments means help. Every problem is a *UsageError.
func Parse(args []string) (Command, error) {
	c, err := parse(args)
	if err != nil {
		return Command{}, err
	}
	return c, nil
}

func parse(args []string) (Command, error) {
	var pos []string
	var occ []occurrence
	var unknown *UsageError
	endFlags := false
	for i := 0; i < len(args); i++ {
		a := normalizeDashes(args[i])
		if endFlags || a == "-" || !strings.HasPrefix(a, "-") || negativeNumberRE.MatchString(a) {
			pos = append(pos, args[i])
			continue
		}
		if a == "--" {
			endFlags = true
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		written := a
		if hasValue {
			written = a[:len(a)-len(value)-1]
		}
		def := lookupFlag(a, strings.ToLower(name))
		if def == nil {
			if unknown == nil {
				unknown = usageErr("", "unknown flag %s%s", written, suggestFlag(name))
			}
			continue
		}
		if def.value != "" && !hasValue {
			if i+1 >= len(args) {
				occ = append(occ, occurrence{def: def, name: written, value: "\x00missing"})
				continue
			}
			i++
			value = args[i]
		}
		occ = append(occ, occurrence{def: def, name: written, value: value})
	}

	c := Command{Output: OutputText}
	if len(pos) == 0 {
		for _, o := range occ {
			if o.def.long == "help" {
				return Command{Verb: VerbHelp, Output: OutputText}, nil
			}
		}
		if unknown != nil {
			return Command{}, unknown
		}
		if len(occ) > 0 {
			return Command{}, usageErr("", "missing command before %s", occ[0].name)
		}
		return Command{Verb: VerbHelp, Output: OutputText}, nil
	}
	v, ok := LookupVerb(pos[0])
	if !ok {
		return Command{}, usageErr("", "unknown command %q%s", pos[0], suggestVerb(pos[0]))
	}
	c.Verb = v
	pos = pos[1:]
	def := verbs[v]

	// --help anywhere wins: "deploy --help" is "help deploy".
	for _, o := range occ {
		if o.def.long == "help" {
			return Command{Verb: VerbHelp, HelpTopic: string(v), Output: OutputText}, nil
		}
	}
	if unknown != nil {
		unknown.Verb = v
		return Command{}, unknown
	}
	seen := map[string]bool{}
	for _, o := range occ {
		if !contains(def.flags, o.def.long) {
			return Command{}, usageErr(v, "%s does not take %s", v, o.name)
		}
		if seen[o.def.long] {
			return Command{}, usageErr(v, "--%s is given twice", o.def.long)
		}
		seen[o.def.long] = true
		if o.value == "\x00missing" {
			return Command{}, usageErr(v, "%s needs a value (%s)", o.name, o.def.value)
		}
		if err := o.def.set(&c, v, o.value); err != nil {
			return Command{}, err
		}
	}

	if err := positionals(&c, def, pos); err != nil {
		return Command{}, err
	}
	return c, check(&c, seen)
}

// normalizeDashes turns a leading em or en dash into "--": phones and Macs
// replace "--" with a dash as people type in Slack.
func normalizeDashes(s string) string {
	for _, d := range []string{"\u2014", "\u2013"} {
		if strings.HasPrefix(s, d) {
			return "--" + strings.TrimLeft(s[len(d):], "-")
		}
	}
	return s
}

func lookupFlag(written, name string) *flagDef {
	long := strings.HasPrefix(written, "--") || strings.HasPrefix(written, "\u2014") || strings.HasPrefix(written, "\u2013")
	for _, f := range flags {
		if long && f.long == name {
			return f
		}
		if !long && f.short != "" && f.short == name {
			return f
		}
	}
	// "-canary" is forgiven as "--canary"; "--e" is not a thing.
	if !long && len(name) > 1 {
		if f, ok := flags[name]; ok {
			return f
		}
	}
	return nil
}

func positionals(c *Command, def verbDef, pos []string) error {
	v := c.Verb
	if len(pos) < len(def.args)-def.opt {
		return usageErr(v, "missing %s", def.args[len(pos)])
	}
	if len(pos) > len(def.args) {
		if len(def.args) == 0 {
			return usageErr(v, "%s takes no arguments, got %q", v, pos[0])
		}
		return usageErr(v, "unexpected argument %q after %s", pos[len(def.args)], def.args[len(def.args)-1])
	}
	for i, p := range pos {
		var err error
		switch def.args[i] {
		case "APP":
			c.App, err = checkName(v, "app", p)
		case "VERSION":
			c.Version, err = checkVersion(v, p)
		case "N":
			n, convErr := strconv.Atoi(p)
			if !countRE.MatchString(p) || convErr != nil || n > MaxReplicas {
				err = usageErr(v, "N must be a whole number from 0 to %d, got %q", MaxReplicas, p)
			}
			c.Replicas = n
		case "COMMAND":
			t, ok := LookupVerb(p)
			if !ok {
				err = usageErr(VerbHelp, "no command %q%s", p, suggestVerb(p))
			}
			c.HelpTopic = string(t)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// check holds the rules between flags.
func check(c *Command, seen map[string]bool) error {
	v := c.Verb
	switch {
	case v == VerbLock && !seen["reason"]:
		return usageErr(v, "lock needs --reason, e.g. --reason \"db migration\"")
	case seen["canary"] && seen["steps"]:
		return usageErr(v, "use either --canary (hold at one weight) or --steps (walk weights), not both")
	case seen["rolling"] && c.Rolling && (seen["canary"] || seen["steps"]):
		return usageErr(v, "--rolling has no canary; drop --canary and --steps")
	}
	return nil
}

// ParseText parses one line as typed into Slack or the dashboard, with
// shell-like quoting: words split on spaces; '...' is literal; "..." allows
// \" and \\; a backslash outside quotes escapes the next character; curly
// quotes (“...”, ‘...’) work like straight ones, since phones type them.
func ParseText(text string) (Command, error) {
	if !utf8.ValidString(text) {
		return Command{}, usageErr("", "command is not valid UTF-8")
	}
	if utf8.RuneCountInString(text) > MaxTextLen {
		return Command{}, usageErr("", "command is longer than %d characters", MaxTextLen)
	}
	words, err := split(text)
	if err != nil {
		return Command{}, err
	}
	return Parse(words)
}

// ParseSlash parses a slash command: slashCmd is the command ("/deploy",
// "/ship") and text what followed it. A command named after a verb
// ("/deploy", "/rollback") supplies that verb, so "/deploy resizer v2" is
// "deploy resizer v2" and "/deploy help" is "help deploy"; any other
// ("/ship") takes the verb from the text. Slack's escapes (&amp; &lt;
// &gt;) are undone first.
func ParseSlash(slashCmd, text string) (Command, error) {
	text = slackUnescape.Replace(text)
	name := strings.TrimPrefix(strings.TrimSpace(slashCmd), "/")
	if v, ok := LookupVerb(name); ok {
		if !utf8.ValidString(text) {
			return Command{}, usageErr(v, "command is not valid UTF-8")
		}
		if utf8.RuneCountInString(text) > MaxTextLen {
			return Command{}, usageErr(v, "command is longer than %d characters", MaxTextLen)
		}
		words, err := split(text)
		if err != nil {
			return Command{}, &UsageError{Verb: v, Msg: err.Msg}
		}
		if len(words) == 1 && (strings.EqualFold(words[0], "help") || words[0] == "-h" || words[0] == "--help") {
			return Command{Verb: VerbHelp, HelpTopic: string(v), Output: OutputText}, nil
		}
		return Parse(append([]string{string(v)}, words...))
	}
	return ParseText(text)
}

// slackUnescape undoes the only escaping Slack applies to command text.
var slackUnescape = strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">")

// split breaks a line into words; see ParseText.
func split(s string) ([]string, *UsageError) {
	var words []string
	var cur strings.Builder
	in := false // inside a word (a quoted empty string is a word)
	flush := func() {
		if in {
			words = append(words, cur.String())
			cur.Reset()
			in = false
		}
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case unicode.IsSpace(r):
			flush()
			i += size
		case r == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, usageErr("", "unterminated ' quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			in, i = true, i+1+j+1
		case r == '"':
			j := i + 1
			closed := false
			for j < len(s) {
				if s[j] == '\\' && j+1 < len(s) && (s[j+1] == '"' || s[j+1] == '\\') {
					cur.WriteByte(s[j+1])
					j += 2
					continue
				}
				if s[j] == '"' {
					closed = true
					break
				}
				cur.WriteByte(s[j])
				j++
			}
			if !closed {
				return nil, usageErr("", "unterminated \" quote")
			}
			in, i = true, j+1
		case r == '“' || r == '‘':
			closer := "”"
			if r == '‘' {
				closer = "’"
			}
			// Curly quotes close only before a space or the end, so the
			// apostrophe in ‘don’t ship’ stays inside.
			rest := s[i+size:]
			j, off := -1, 0
			for {
				k := strings.Index(rest[off:], closer)
				if k < 0 {
					break
				}
				end := off + k + len(closer)
				if next, _ := utf8.DecodeRuneInString(rest[end:]); end == len(rest) || unicode.IsSpace(next) {
					j = off + k
					break
				}
				off = end
			}
			if j < 0 {
				return nil, usageErr("", "unterminated %c quote", r)
			}
			cur.WriteString(rest[:j])
			in, i = true, i+size+j+len(closer)
		case r == '\\':
			i += size
			if i < len(s) {
				_, n := utf8.DecodeRuneInString(s[i:])
				cur.WriteString(s[i : i+n])
				i += n
			} else {
				cur.WriteByte('\\')
			}
			in = true
		default:
			cur.WriteString(s[i : i+size])
			in, i = true, i+size
		}
	}
	flush()
	return words, nil
}

var plainWordRE = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=,][A-Za-z0-9_./:@%+=,-]*$`)

// quote returns s as one word ParseText reads back as s.
func quote(s string) string {
	if plainWordRE.MatchString(s) {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// String is the canonical text form: the verb, its positionals, then flags
// in a fixed order (defaults left out). ParseText(c.String()) gives c back.
func (c Command) String() string {
	parts := []string{string(c.Verb)}
	switch c.Verb {
	case VerbHelp:
		if c.HelpTopic != "" {
			parts = append(parts, c.HelpTopic)
		}
	default:
		if c.App != "" {
			parts = append(parts, c.App)
		}
	}
	if c.Verb == VerbDeploy {
		parts = append(parts, c.Version)
	}
	if c.Verb == VerbScale {
		parts = append(parts, strconv.Itoa(c.Replicas))
	}
	if c.Env != "" {
		parts = append(parts, "--env", c.Env)
	}
	if c.Canary != 0 {
		parts = append(parts, "--canary", c.Canary.String())
	}
	if len(c.Steps) > 0 {
		ws := make([]string, len(c.Steps))
		for i, w := range c.Steps {
			ws[i] = w.Number()
		}
		parts = append(parts, "--steps", strings.Join(ws, ","))
	}
	if c.Rolling {
		parts = append(parts, "--rolling")
	}
	if c.To != "" {
		parts = append(parts, "--to", c.To)
	}
	if c.Reason != "" {
		parts = append(parts, "--reason", quote(c.Reason))
	}
	if c.LogVersion != "" {
		parts = append(parts, "--version", c.LogVersion)
	}
	if c.Lines != 0 {
		parts = append(parts, "--lines", strconv.Itoa(c.Lines))
	}
	if c.Follow {
		parts = append(parts, "--follow")
	}
	if c.Wait {
		parts = append(parts, "--wait")
	}
	if c.Output != "" && c.Output != OutputText {
		parts = append(parts, "--output", c.Output)
	}
	return strings.Join(parts, " ")
}

// suggestVerb returns "; did you mean X?" for a near miss, else "".
func suggestVerb(s string) string {
	names := make([]string, 0, len(verbs))
	for _, v := range Verbs() {
		names = append(names, string(v))
	}
	if m := suggest.Closest(strings.ToLower(s), names); m != "" {
		return "; did you mean " + m + "?"
	}
	return ""
}

func suggestFlag(name string) string {
	if m := suggest.Closest(strings.ToLower(name), flagOrder); m != "" {
		return "; did you mean --" + m + "?"
	}
	return ""
}
