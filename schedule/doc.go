// Package schedule keeps chosen images of upstream registries in the cache
// before anyone pulls them: sync rules, each naming an image or a
// repository, which tags of it to keep (globs, regular expressions,
// semantic version constraints, the newest N) and for which platforms,
// run every so often with jitter. A run lists the repository's tags, then
// brings every chosen image in through the mirror's own pull path, so that
// whatever the mirror enforces on a client's pull (access, budget, policy)
// applies to a sync too. The images a rule keeps are pinned in the cache.
package schedule
