package main

import (
	"strings"
	"testing"
)

// wantIn reports each of want that the command's output (stream names it)
// lacks.
func wantIn(t *testing.T, stream, got string, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", stream, w, got)
		}
	}
}
