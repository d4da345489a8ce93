//go:build !record

package diagnose

// recording is off in a normal test run: the lab's captures are checked,
// not rewritten (record_test.go).
const recording = false
