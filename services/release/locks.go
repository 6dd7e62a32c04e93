package release

import (
	"context"
	"sync"
)

// keyedLocks serializes work per key (a repository, or a repository and an
// environment): in this process with a mutex per key, then across the
// replicas sharing the database with a lock the database holds (a PostgreSQL
// advisory lock; nothing on SQLite, which serves one process). So old and new
// replicas side by side during a rolling upgrade never deploy one
// environment at once.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
	// shared takes the cross-replica lock for a key.
	shared func(ctx context.Context, key string) (func(), error)
}

type keyLock struct {
	ch    chan struct{} // holds a token while locked
	users int           // holders and waiters; the entry is dropped at 0
}

func newKeyedLocks(shared func(ctx context.Context, key string) (func(), error)) *keyedLocks {
	return &keyedLocks{locks: map[string]*keyLock{}, shared: shared}
}

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
	release := func() {
		<-l.ch
		k.leave(key, l)
	}
	unshare, err := k.shared(ctx, "sluice-release\x00"+key)
	if err != nil {
		release()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			unshare()
			release()
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
