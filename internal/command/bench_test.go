package command

import "testing"

// BenchmarkParseText measures one Slack-style line; a slash command must be
// acknowledged within 3 s, so this must stay far below that.
func BenchmarkParseText(b *testing.B) {
	for b.Loop() {
		if _, err := ParseText(`deploy resizer v2 --canary 1% --env production --wait -o json`); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSlashLock(b *testing.B) {
	for b.Loop() {
		if _, err := ParseSlash("/ship", "lock resizer --reason “db migration &amp; backfill”"); err != nil {
			b.Fatal(err)
		}
	}
}
