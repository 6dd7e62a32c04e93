// Package release is the release service: it versions the runs whose tests
// passed, deploys them to the pipeline's environments one after the other,
// verifies each deploy and rolls an environment back to its last good
// release when a deploy or its verification fails.
package release
