//go:build record

package diagnose

// recording: built with the tag record (`make record`), TestLab writes the
// lab captures under testdata and TestCorpusRecord the corpus.
const recording = true
