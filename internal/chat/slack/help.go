package slack

import "github.com/shipteam/ship/internal/command"

// helpText is the grammar's help: every verb, or one verb's usage.
func helpText(topic command.Verb) string {
	if topic != "" {
		return "usage: /ship " + command.Usage(topic)
	}
	return command.Help()
}
