package sim

// Known findings: guarantees that today's code is known to break, each with the issue that tracks it. Their
// checks still run; a violation of one is reported as known and does not fail the run, unless the test is run
// with -known (then every check counts). When the fix lands, delete the entry: from then on the check fails the
// run again. This is the one place where such findings are listed.
var knownFindings = map[string]string{}

// Known says which checks are off (their violations reported, not failed).
type Known struct {
	// All turns every known finding back on: nothing is skipped.
	All bool
}

// Skips reports whether a violation of check in the run of seed is a known finding that is off.
func (k Known) Skips(seed uint64, check string) bool {
	if k.All {
		return false
	}
	_, ok := knownFindings[check]
	return ok
}
