package container

import (
	"strings"
	"testing"
)

// A long step name (<pipeline>/<name>, up to 127 characters) is cut, not
// the random part that keeps two containers of steps alike apart.
func TestResourceNameKeepsItsLastPart(t *testing.T) {
	t.Parallel()
	run := "01a24c79-2d51-7e19-aaa6-228f980fdb09"
	long := strings.Repeat("p", 63) + "/" + strings.Repeat("s", 63)
	a := resourceName("sluice", run, "build", long, "a1b2c3")
	b := resourceName("sluice", run, "build", long, "d4e5f6")
	if len(a) != 128 || a == b || !strings.HasSuffix(a, "-a1b2c3") || !strings.HasPrefix(a, "sluice-"+run+"-build-ppp") {
		t.Errorf("names %q and %q: want 128 bytes each, apart by their last part", a, b)
	}
	if got := resourceName("sluice", run, "test", "docs/unit", "a1b2c3"); got != "sluice-"+run+"-test-docs_unit-a1b2c3" {
		t.Errorf("short name %q", got)
	}
}
