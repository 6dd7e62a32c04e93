package main

import "testing"

func TestGreeting(t *testing.T) {
	for name, want := range map[string]string{
		"ada":   "welcome to the guestbook, ada",
		"  bo ": "welcome to the guestbook, bo",
		"":      "welcome to the guestbook, stranger",
	} {
		if got := Greeting(name); got != want {
			t.Errorf("Greeting(%q) = %q, want %q", name, got, want)
		}
	}
}
