//go:build race

package integration

// raceDetector is set when the tests run under the race detector, which
// makes them several times slower: bounded soaks do fewer rounds.
const raceDetector = true
