package release

import (
	"context"
	"sync"
)

// keyedLocks serializes work per key (a repository, or a repository and an
// environment). It is in-process only: with more than one replica of the
// release service, deploys of one environment must be serialized across
// replicas too (a database or NATS KV lease); until then, run one replica.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	ch    chan struct{} // holds a token while locked
	users int           // holders and waiters; the entry is dropped at 0
}

func newKeyedLocks() *keyedLocks { return &keyedLocks{locks: map[string]*keyLock{}} }

// Lock waits until key is free or ctx ends, and returns the unlock function.
func (k *keyedLocks) Lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	l := k.locks[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
	case <-ctx.Done():
		k.leave(key, l)
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-l.ch
			k.leave(key, l)
		})
	}, nil
}

func (k *keyedLocks) leave(key string, l *keyLock) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l.users--
	if l.users == 0 {
		delete(k.locks, key)
	}
}

func repositoryKey(repository string) string { return "repository\x00" + repository }

func environmentKey(repository, environment string) string {
	return "environment\x00" + repository + "\x00" + environment
}
