// Package testkit holds the helpers linkbeat's host tests, soak test,
// benchmarks and VM guest tests share: the daemon binary, its stderr and
// readiness, network namespaces, and the metrics and doctor output they
// read. It returns errors rather than failing a test, so the benchmark
// program can use it too.
package testkit
