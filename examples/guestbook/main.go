// Command guestbook greets the names it is given, one line each: the
// example of a pipeline whose steps run in containers (see README.md).
package main

import (
	"fmt"
	"os"
	"strings"
)

// Greeting is the line guestbook prints for name.
func Greeting(name string) string {
	name = strings.TrimSpace(name)
	if name == "" {
		name = "stranger"
	}
	return "welcome to the guestbook, " + name
}

func main() {
	names := os.Args[1:]
	if len(names) == 0 {
		names = []string{""}
	}
	for _, n := range names {
		fmt.Println(Greeting(n))
	}
}
