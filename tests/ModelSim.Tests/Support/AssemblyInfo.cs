// Test classes run in parallel (xUnit's default: one collection per class, as many threads as cores). Timing
// assertions measure against the engine's own schedule or allow generous slack, so they hold on a busy 2-core box.
[assembly: CollectionBehavior(MaxParallelThreads = 2)]
