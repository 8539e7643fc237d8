//go:build !linux

package gpio

import (
	"fmt"
	"time"
)

// openMatrixPort fails with ErrUnsupported outside Linux: the matrix
// keypad's Run reports the input disconnected and keeps retrying.
func openMatrixPort(chip, consumer string, rows, cols []int, edge func(ts time.Duration)) (matrixPort, error) {
	return nil, fmt.Errorf("open gpio chip %q: %w", chip, ErrUnsupported)
}
