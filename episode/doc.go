// Package episode logs lasting conditions (a cache over its budget, an
// upstream down, stale answers served) once per episode instead of once
// per occurrence: the first occurrence is logged with its details, then
// at most one line per interval counts the occurrences since, and the end
// of the episode is logged with the total.
package episode
