package release

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxVersionLen is the longest version: a Kubernetes label value.
const MaxVersionLen = 63

// CheckVersion is the one rule for a version name, the same at every door
// (grammar, API, engine): it is used as a Kubernetes label value and
// rendered into commands and image names, so at most 63 characters of
// [A-Za-z0-9._-], beginning and ending with a letter or digit. Nothing a
// shell, a chat or a terminal would interpret gets through.
func CheckVersion(v string) error {
	if v == "" {
		return fmt.Errorf("a version is required")
	}
	ok := len(v) <= MaxVersionLen && alnum(rune(v[0])) && alnum(rune(v[len(v)-1]))
	for _, r := range v {
		ok = ok && (alnum(r) || r == '.' || r == '_' || r == '-')
	}
	if !ok {
		return fmt.Errorf("invalid version %s: use at most %d of A-Z a-z 0-9 . _ -, beginning and ending with a letter or digit", quoteShort(v), MaxVersionLen)
	}
	return nil
}

func alnum(r rune) bool {
	return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

// MaxReasonLen bounds a reason (lock, abort) in runes.
const MaxReasonLen = 500

// CheckReason is the one rule for free text people attach to an action (a
// lock's or an abort's reason): one line, at most MaxReasonLen runes, no
// control, escape, bidirectional or zero-width characters (they would be
// printed raw into other operators' terminals and chat). It returns the
// text trimmed.
func CheckReason(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case !utf8.ValidString(s):
		return "", fmt.Errorf("reason is not valid UTF-8")
	case utf8.RuneCountInString(s) > MaxReasonLen:
		return "", fmt.Errorf("reason is longer than %d characters", MaxReasonLen)
	case strings.IndexFunc(s, hidden) >= 0:
		return "", fmt.Errorf("reason must be one line of plain text (no control, escape, bidirectional or zero-width characters)")
	}
	return s, nil
}

// hidden reports characters that change how text around them shows:
// controls (ESC, newlines), bidirectional overrides and zero-width ones.
func hidden(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

// quoteShort quotes s for an error message, cut to a readable length and
// with anything hidden escaped.
func quoteShort(s string) string {
	if utf8.RuneCountInString(s) > 80 {
		s = string([]rune(s)[:80]) + "…"
	}
	return fmt.Sprintf("%+q", s)
}
