package secretmask_test

import (
	"fmt"
	"os"

	"github.com/sluicehq/sluice/platform/secretmask"
)

func ExampleMasker_String() {
	m := secretmask.New([]string{"hunter22"})
	fmt.Println(m.String("password=hunter22 base64=aHVudGVyMjI= hex=68756e7465723232"))
	// Output: password=*** base64=*** hex=***
}

func ExampleMasker_Writer() {
	m := secretmask.New([]string{"hunter22"})
	w := m.Writer(os.Stdout)
	// The secret arrives in two pieces, as the output of a step may.
	fmt.Fprint(w, "token: hun")
	fmt.Fprint(w, "ter22\ndone\n")
	if err := w.Close(); err != nil { // passes on what was held back
		fmt.Println(err)
	}
	// Output:
	// token: ***
	// done
}
