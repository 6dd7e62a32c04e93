package servicecmd

// WithCommit records the git commit the binary was built from, so that
// --version prints "sluice-<service> <version> (<commit>)". Mains pass the
// commit they get with -ldflags "-X main.commit=...".
func (f *Flags) WithCommit(commit string) *Flags {
	f.commit = commit
	return f
}

// versionLine is what --version prints.
func (f *Flags) versionLine() string {
	line := "sluice-" + f.service + " " + f.version
	if f.commit != "" {
		line += " (" + f.commit + ")"
	}
	return line
}
