package gitcheckout_test

import (
	"context"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/memory"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/gitcheckout"
	"github.com/sluicehq/sluice/platform/runner"
	"github.com/sluicehq/sluice/platform/runner/runnertest"
)

// panickingStorer is a source whose objects cannot be read without a
// panic, as a bug in a storage layer would.
type panickingStorer struct{ *memory.Storage }

func (panickingStorer) EncodedObject(plumbing.ObjectType, plumbing.Hash) (plumbing.EncodedObject, error) {
	panic("corrupt object")
}

// A panic in the goroutine that encodes the pack fails the copy (the
// checkout, the mirror's fetch) with the panic, counted; the process goes
// on and no goroutine is left behind.
func TestCopyObjectsReturnsTheEncodersPanic(t *testing.T) {
	defer goleak.VerifyNone(t)
	sup := runnertest.New(t)
	src := memory.NewStorage()
	blob := src.NewEncodedObject()
	blob.SetType(plumbing.BlobObject)
	w, err := blob.Writer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	h, err := src.SetEncodedObject(blob)
	if err != nil {
		t.Fatal(err)
	}

	err = gitcheckout.CopyObjects(context.Background(), sup.Supervisor, panickingStorer{src}, memory.NewStorage(), []plumbing.Hash{h})
	p, ok := runner.Panicked(err)
	if !ok || p.Value != "corrupt object" {
		t.Fatalf("CopyObjects returned %v; want the encoder's panic", err)
	}
	if n := sup.Panics(t, "git pack encoder"); n != 1 {
		t.Errorf("%v panics of the encoder counted; want 1", n)
	}

	// The same copy from a sound source works.
	dst := memory.NewStorage()
	if err := gitcheckout.CopyObjects(context.Background(), sup.Supervisor, src, dst, []plumbing.Hash{h}); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.EncodedObject(plumbing.BlobObject, h); err != nil {
		t.Errorf("the blob was not copied: %v", err)
	}
}
