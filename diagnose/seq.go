package diagnose

// Sequence-number and timestamp comparison in serial arithmetic (RFC 1982;
// RFC 9293 section 3.4; RFC 7323 section 5.3).

func seqLT(a, b uint32) bool { return int32(a-b) < 0 }
func seqLE(a, b uint32) bool { return int32(a-b) <= 0 }
func seqGT(a, b uint32) bool { return int32(a-b) > 0 }
func seqGE(a, b uint32) bool { return int32(a-b) >= 0 }
