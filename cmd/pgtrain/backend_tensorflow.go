//go:build tensorflow

package main

// Built with the tensorflow tag, the binary links libtensorflow and offers the "tensorflow"
// model backend (jobs with "backend": "tensorflow", and `pgtrain trainer --backend tensorflow`).
import _ "pgtrain/model/tensorflow"
