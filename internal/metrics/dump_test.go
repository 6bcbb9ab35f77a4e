package metrics

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/registry"
)

func TestSharedDumpServesOneDumpForMaxAge(t *testing.T) {
	now := time.Unix(1000, 0)
	calls := 0
	s := newSharedDump(func() ([]registry.Link, error) {
		calls++
		return []registry.Link{{Index: calls}}, nil
	}, func() time.Time { return now })

	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() { defer wg.Done(); s.get() }()
	}
	wg.Wait()
	if calls != 1 {
		t.Fatalf("20 concurrent scrapes made %d dumps, want 1", calls)
	}
	now = now.Add(dumpMaxAge - time.Millisecond)
	if l, _ := s.get(); calls != 1 || l[0].Index != 1 {
		t.Fatalf("within max age: %d dumps, got link %d; want 1 dump, link 1", calls, l[0].Index)
	}
	now = now.Add(time.Millisecond)
	if l, _ := s.get(); calls != 2 || l[0].Index != 2 {
		t.Fatalf("at max age: %d dumps, got link %d; want a fresh dump (2, link 2)", calls, l[0].Index)
	}
}

func TestSharedDumpDoesNotKeepErrors(t *testing.T) {
	fail := true
	s := newSharedDump(func() ([]registry.Link, error) {
		if fail {
			return nil, errors.New("netlink: boom")
		}
		return nil, nil
	}, time.Now)
	if _, err := s.get(); err == nil {
		t.Fatal("want the dump's error")
	}
	fail = false
	if l, err := s.get(); err != nil || l == nil {
		t.Fatalf("after a failure the next scrape must dump again: %v, %v", l, err)
	}
}
