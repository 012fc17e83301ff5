package ebscsi

import (
	"context"
	"log/slog"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// keyQueue is a rate-limited work queue of object keys ("name" or
// "namespace/name"), drained by one worker, as in sample-controller.
type keyQueue struct {
	name  string
	queue workqueue.TypedRateLimitingInterface[string]
	log   *slog.Logger
}

func newKeyQueue(name string, log *slog.Logger) *keyQueue {
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: name},
	)
	return &keyQueue{name: name, queue: q, log: log}
}

// add queues the key of obj, which may be a tombstone from a delete event.
func (q *keyQueue) add(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		q.log.Error("cannot queue object", "queue", q.name, "err", err)
		return
	}
	q.queue.Add(key)
}

// handler queues every added, updated and deleted object.
func (q *keyQueue) handler() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    q.add,
		UpdateFunc: func(_, obj any) { q.add(obj) },
		DeleteFunc: q.add,
	}
}

// run calls sync for each queued key until ctx is done. A failed key comes
// back with exponential backoff; shutdown is not a failure.
func (q *keyQueue) run(ctx context.Context, sync func(context.Context, string) error) {
	go func() {
		<-ctx.Done()
		q.queue.ShutDown()
	}()
	for {
		key, quit := q.queue.Get()
		if quit {
			return
		}
		err := sync(ctx, key)
		switch {
		case err == nil:
			q.queue.Forget(key)
		case ctx.Err() != nil:
			q.queue.Forget(key)
		case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
			// A stale cache, corrected by the next event or retry.
			q.log.Debug("sync raced, will retry", "queue", q.name, "key", key, "err", err)
			q.queue.AddRateLimited(key)
		default:
			q.log.Error("sync failed, will retry", "queue", q.name, "key", key, "err", err)
			q.queue.AddRateLimited(key)
		}
		q.queue.Done(key)
	}
}
