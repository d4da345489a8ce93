// Package status is the daemon's /status endpoint and `tcpnorm status`:
// what each policy and each queue is doing now, put together from the
// policy manager (config), the counters (metrics) and the kernel's queue
// table. It sits between config and metrics so that neither imports the
// other.
package status
