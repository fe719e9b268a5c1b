package bus

import "strings"

func containsFold(s, sub string) bool { return strings.Contains(strings.ToLower(s), sub) }
