// Package test holds vxdp's end-to-end tests: each builds its own netns lab
// of the seed topology (package lab) with a unique prefix, runs real
// agents built from this tree, drives pure-Go traffic through it and tears
// it down. They need root and skip otherwise.
package test
